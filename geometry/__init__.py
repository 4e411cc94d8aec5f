"""Pure-torch geometry of parameter-space vectors: one definition of every measurement (docs/science.md).

Nothing here imports Lightning or ``loclin``: functions and small state objects take tensors and
return tensors or floats, so callbacks, the quadratic experiment, config validation and the tests
share each definition. Import from the module that defines a name (``from geometry.capture import
capture``); the package itself imports nothing, so ``geometry.lags`` stays torch-free for config
validation. Where each measurement lives:

    capture, held-out capture     geometry.capture    cap(B, v) = ‖Bᵀv‖²/‖v‖², k/D baseline (2, 3)
    spectrum of a window          geometry.spectrum   energy_topk, effective rank, participation (1)
    bases of spans                geometry.subspace   top-k basis and orthonormalize via the Gram
    the vector window             geometry.window     W rows of D with their Gram kept up to date
    the rolling basis             geometry.rolling    B_t every stride steps, its held-out capture (1, 3)
    running means                 geometry.running    the averages behind every reported mean
    drift                         geometry.angles     overlap ‖B_sᵀB_t‖²/k, Grassmann distance (4)
                                  geometry.lags       the drift ladder: pairs, retention, lags that fit
                                  geometry.drift      half-life, noise ceiling, plateau (4)
    the prefix basis              geometry.prefix     P_m = span(u_0 … u_{m−1}) and its capture (7)
    static bases                  geometry.static_bases  S1–S7 of the recovery protocol (6)
    Hessian                       geometry.hessian    HVPs and Lanczos top eigenpairs
    LoRA effective space          geometry.lora       W_ℓ = s_ℓ B_ℓ A_ℓ and its tangent map
    random search                 geometry.random_search, geometry.perturbed_loss   theory and probe (8)
    steering                      geometry.steering   CAA vectors, one-step shifts, slopes (9)
    intervals                     geometry.intervals  t-intervals over seeds, bootstrap over items (10)
    quadratic toy                 geometry.quadratic  GD on a known spectrum, the Krylov basis
    sketched / sharded windows    geometry.sketch, geometry.sharded
"""
