"""Window capture, rolling basis, held-out capture and drift against brute-force references."""

import numpy as np
import pytest
import torch
from loclin.callbacks.drift import DriftCallback
from loclin.callbacks.gradient_stream import GradientStream
from loclin.callbacks.gradient_window import GradientWindowCallback
from loclin.callbacks.rolling_basis import RollingBasisCallback
from scipy.linalg import subspace_angles

from tests.callbacks.conftest import StepDriver

D = 4 * 6 + 4 + 1  # ToyModule: first (4x6), second weight (1x4) and bias (1)


def stream_in_subspace(n: int, basis: torch.Tensor, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [basis @ torch.randn(basis.shape[1], generator=g) for _ in range(n)]


def test_window_holds_gradients_and_sgd_updates(toy):
    window = GradientWindowCallback(GradientStream(window=5))
    driver = StepDriver(toy, [window], lr=0.1)
    grads = [torch.randn(D) for _ in range(7)]
    for g in grads:
        driver.step(g)
    assert window.stream.dim == D
    assert window.stream.vector.slices == {"first": (0, 24), "second": (24, 29)}
    for source, expected in (("grad", grads), ("update", [-0.1 * g for g in grads])):
        w = window.stream.windows[source]
        for slot, step in enumerate(w.steps.tolist()):
            torch.testing.assert_close(w.rows[slot], expected[step], rtol=1e-5, atol=1e-6)
    assert window.stream.latest_step == {"grad": 6, "update": 6}


def test_nonfinite_gradients_are_skipped_and_counted(toy):
    window = GradientWindowCallback(GradientStream(window=4, sources=["grad"]))
    driver = StepDriver(toy, [window])
    driver.step(torch.randn(D))
    bad = torch.randn(D)
    bad[3] = float("nan")
    with pytest.warns(UserWarning, match="non-finite grad at step 1"):
        driver.step(bad)
    driver.step(torch.randn(D))
    assert window.stream.nonfinite["grad"] == 1
    assert window.stream.windows["grad"].count == 2
    assert torch.isfinite(window.stream.windows["grad"].gram()).all()


def test_rolling_basis_matches_svd_and_heldout_capture_matches_projection(toy):
    window = GradientWindowCallback(GradientStream(window=6, sources=["grad"]))
    rolling = RollingBasisCallback(window.stream, "grad", k=2, stride=3, heldout_lags=(1, 2))
    driver = StepDriver(toy, [window, rolling])
    grads = [torch.randn(D) for _ in range(10)]
    for g in grads[:6]:
        driver.step(g)
    assert rolling.basis.refreshes == 0  # the window is first full at step 5, not a multiple of 3
    driver.step(grads[6])  # step 6: first refresh, window = g_1..g_6
    assert rolling.basis.current_step == 6
    last = torch.stack(grads[1:7]).double().numpy()
    u = np.linalg.svd(last.T, full_matrices=False)[0][:, :2]
    assert subspace_angles(rolling.basis.current_basis.double().numpy(), u).max() < 1e-4
    for g in grads[7:10]:  # held-out captures of g_7 (h=1), g_8 (h=2) are made at the step-9 refresh
        driver.step(g)
    assert rolling.basis.current_step == 9
    for h in (1, 2):
        v = grads[6 + h].double().numpy()
        expected = np.linalg.norm(u.T @ v) ** 2 / np.linalg.norm(v) ** 2
        assert rolling.basis.averages.mean(f"heldout_h{h}") == pytest.approx(expected, rel=1e-4)


def test_heldout_capture_is_one_inside_a_fixed_plane_and_k_over_d_for_noise(toy):
    plane = torch.linalg.qr(torch.randn(D, 3))[0]
    window = GradientWindowCallback(GradientStream(window=6, sources=["grad"]))
    rolling = RollingBasisCallback(window.stream, "grad", k=3, stride=2, heldout_lags=(1, 2, 3))
    driver = StepDriver(toy, [window, rolling], lr=0.0)
    for g in stream_in_subspace(30, plane, seed=1):
        driver.step(g)
    assert rolling.basis.averages.mean("heldout_h1") == pytest.approx(1.0, abs=1e-5)
    assert rolling.summary()["metrics"]["grad.energy_topk"]["value"] == pytest.approx(1.0, abs=1e-6)


def test_drift_of_a_fixed_plane_is_zero_and_of_noise_is_near_baseline(toy):
    def run(stream):
        window = GradientWindowCallback(GradientStream(window=4, sources=["grad"]))
        rolling = RollingBasisCallback(window.stream, "grad", k=2, stride=2, heldout_lags=(1, 2))
        drift = DriftCallback(window.stream, rolling.basis, stride=4, lags=(4, 8, 16))
        driver = StepDriver(toy, [window, rolling, drift], lr=0.0)
        for g in stream:
            driver.step(g)
        return drift

    plane = torch.linalg.qr(torch.randn(D, 2))[0]
    fixed = run(stream_in_subspace(60, plane, seed=2)).summary()
    curve = fixed["curves"]["grad.drift"]
    np.testing.assert_allclose(curve["overlap"], 1.0, atol=1e-5)
    assert (fixed["metrics"]["grad.half_life"]["value"], fixed["metrics"]["grad.half_life"]["bound"]) == (
        16,
        "at_least",
    )

    g = torch.Generator().manual_seed(5)
    noise = run([torch.randn(D, generator=g) for _ in range(400)]).summary()
    curve = noise["curves"]["grad.drift"]
    # independent windows: the overlap of two random 2-planes in R^29 averages k/D = 0.069
    assert np.mean(curve["overlap"][2:]) == pytest.approx(2 / D, rel=0.35)
    # below ½ already at the first lag: the half-life is at most 4, not a crossing drawn from lag 0
    assert (noise["metrics"]["grad.half_life"]["value"], noise["metrics"]["grad.half_life"]["bound"]) == (4, "at_most")


def test_callback_state_round_trip_resumes_identically(toy):
    def build():
        window = GradientWindowCallback(GradientStream(window=4))
        rolling = RollingBasisCallback(window.stream, "grad", k=2, stride=2, heldout_lags=(1, 2))
        drift = DriftCallback(window.stream, rolling.basis, stride=2, lags=(2, 4))
        return [window, rolling, drift]

    g = torch.Generator().manual_seed(9)
    stream = [torch.randn(D, generator=g) for _ in range(20)]
    reference = build()
    driver = StepDriver(toy, reference, lr=0.0)
    for v in stream:
        driver.step(v)

    first = build()
    driver = StepDriver(toy, first, lr=0.0)
    for v in stream[:11]:
        driver.step(v)
    states = [cb.state_dict() for cb in first]
    resumed = build()
    driver2 = StepDriver(toy, resumed, lr=0.0)
    for cb, state in zip(resumed, states):
        cb.load_state_dict(state)
    driver2.trainer.global_step = 11
    for v in stream[11:]:
        driver2.step(v)
    assert resumed[1].summary()["metrics"] == reference[1].summary()["metrics"]
    assert resumed[2].summary() == reference[2].summary()


@pytest.mark.parametrize("world_size", [2, 3])
def test_split_shares_out_every_coordinate_once_in_order(world_size):
    """ParameterVector.split: rank r's coordinates are θ[start_r:stop_r], the ranges tile
    [0, D) in rank order, and each group's local slice is its global range cut to the rank's."""
    from loclin.callbacks.parameter_vector import ParameterVector
    from torch import nn

    groups = {
        name: [(f"{name}.{i}", nn.Parameter(torch.randn(n))) for i, n in enumerate(sizes)]
        for name, sizes in (("a", [7, 3]), ("b", [11]), ("c", [2, 2, 5]))
    }
    whole = ParameterVector(groups)
    theta = whole.values()
    parts = [whole.split(rank, world_size) for rank in range(world_size)]
    assert [p.shard.start for p in parts] == [0] + [p.shard.stop for p in parts[:-1]] and parts[
        -1
    ].shard.stop == whole.dim
    for part in parts:
        assert part.dim == part.shard.stop - part.shard.start > 0 and part.shard.dim == whole.dim
        torch.testing.assert_close(part.values(), theta[part.shard.start : part.shard.stop], rtol=0, atol=0)
    for group, (start, stop) in whole.slices.items():  # a group's local slices join into its whole slice
        joined = torch.cat([part.values()[slice(*part.slices[group])] for part in parts])
        torch.testing.assert_close(joined, theta[start:stop], rtol=0, atol=0)
    assert max(p.dim for p in parts) <= whole.dim / world_size + 11  # balanced to within one parameter


def test_recovery_controls_equal_numpy_qr_of_the_updates_at_the_drawn_positions(toy):
    from loclin.callbacks.parameter_vector import ParameterVector
    from loclin.callbacks.recovery import RecoveryCallback

    vector = ParameterVector(toy.parameter_groups())
    theta0 = vector.values()
    recovery = RecoveryCallback(
        vector, {}, theta0, "t", prefix_ms=[1, 2, 4], steps=12, control_m=4, control_draws=3, seed=5, evaluate=False
    )
    recovery.theta_zero = theta0
    recovery.vector = vector
    recovery.module_needs = recovery.data_needs = ()  # only the controls are read: no held-out evaluation
    driver = StepDriver(toy, [recovery], lr=0.1)
    grads = [torch.randn(D, generator=torch.Generator().manual_seed(i)) for i in range(12)]
    for g in grads:
        driver.step(g)
    delta = (vector.values() - theta0).double().numpy()
    controls = recovery.control_captures(vector.values() - theta0)
    updates = np.stack([-0.1 * g.double().numpy() for g in grads])

    def cap(rows):
        q = np.linalg.qr(rows.T)[0]
        return float(np.sum((q.T @ delta) ** 2) / (delta @ delta))

    for j, positions in enumerate(controls["positions"]):
        for i, m in enumerate(controls["m"]):
            assert controls["random"][i][j] == pytest.approx(cap(updates[positions[:m]]), abs=1e-5)
    for i, m in enumerate(controls["m"]):
        assert controls["last"][i] == pytest.approx(cap(updates[12 - m :]), abs=1e-5)


@pytest.mark.parametrize("fallback", [None, "missing grad", "float64 parameter"])
def test_parameter_vector_copies_and_update_equal_numpy_in_one_kernel_and_per_parameter(fallback):
    """write_grads, write_values and subtract_from_values against numpy concatenations: through one
    torch.cat where every tensor is a float32 CPU tensor, and through the per-parameter copies where
    a grad is missing (zeros in its place) or a parameter is float64 (rounded into the float32 row).
    The update is θ_{t+1} − θ_t, computed as numpy does, bit for bit."""
    from loclin.callbacks.parameter_vector import ParameterVector
    from torch import nn

    generator = torch.Generator().manual_seed(4)
    params = [nn.Parameter(torch.randn(shape, generator=generator)) for shape in ((3, 5), (7,), (2, 2, 2))]
    if fallback == "float64 parameter":
        params[1] = nn.Parameter(params[1].detach().double())
    vector = ParameterVector({"a": [("p0", params[0]), ("p1", params[1])], "b": [("p2", params[2])]})
    for i, p in enumerate(params):
        p.grad = None if fallback == "missing grad" and i == 1 else torch.randn(p.shape, generator=generator).to(p)

    def flat(tensors):
        return [t.detach().numpy().ravel() for t in tensors]

    grads = [np.zeros(p.numel()) if p.grad is None else flat([p.grad])[0] for p in params]
    out = torch.empty(vector.dim)
    vector.write_grads(out)
    np.testing.assert_array_equal(out.numpy(), np.concatenate(grads).astype(np.float32))
    vector.write_values(out)
    before = np.concatenate(flat(params)).astype(np.float32)
    np.testing.assert_array_equal(out.numpy(), before)
    with torch.no_grad():
        for p in params:
            p.mul_(0.9).add_(0.01)
    vector.subtract_from_values(out)
    after = np.concatenate(
        [a - b for a, b in zip(flat(params), np.split(before, np.cumsum([p.numel() for p in params])[:-1]))]
    )
    np.testing.assert_array_equal(out.numpy(), after.astype(np.float32))
