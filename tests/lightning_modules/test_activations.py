"""Residual-stream hooks, steering hooks, CAA vectors and one-step shifts on a tiny GPT-2,
against transformers' output_hidden_states, brute-force loops and a first-order JVP."""

import pytest
import torch
from loclin.geometry.steering import cosine_per_layer, mean_difference, random_cosine_baseline
from loclin.lightning_modules.activations import decoder_blocks, residual_at, residual_stream, steering
from loclin.lightning_modules.optim import OptimizerSpec
from transformers import AutoModelForCausalLM, AutoTokenizer

from loclin.protocols.steer.step_shift import first_order_shift, loss_gradient, one_step_shift, step_direction


@pytest.fixture(scope="module")
def lm(tiny_gpt2):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2, dtype=torch.float64).eval()
    return model, AutoTokenizer.from_pretrained(tiny_gpt2)


def encode(tokenizer, texts):
    ids = [tokenizer(t)["input_ids"] for t in texts]
    width = max(map(len, ids))
    input_ids = torch.tensor([row + [tokenizer.eos_token_id] * (width - len(row)) for row in ids])
    mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in ids])
    return input_ids, mask, torch.tensor([len(row) - 1 for row in ids])


def test_hooks_read_every_block_output_as_output_hidden_states(lm):
    model, tokenizer = lm
    input_ids, mask, _ = encode(tokenizer, ["The cat sat on the mat.", "Is it raining?"])
    with residual_stream(model) as captured:
        out = model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True)
    blocks = len(decoder_blocks(model))
    assert sorted(captured) == list(range(blocks)) == list(range(len(out.hidden_states) - 1))
    for layer in range(blocks - 1):
        torch.testing.assert_close(captured[layer], out.hidden_states[layer + 1])
    torch.testing.assert_close(
        model.transformer.ln_f(captured[blocks - 1]), out.hidden_states[-1]
    )  # last entry is after ln_f


def test_measurement_and_steering_leave_no_trace(lm):
    from peft import LoraConfig, get_peft_model

    model, tokenizer = lm
    input_ids, mask, start = encode(tokenizer, ["Hello there, general Kenobi", "Yes"])
    hooks_before = [dict(block._forward_hooks) for block in decoder_blocks(model)]
    before = model(input_ids=input_ids, attention_mask=mask).logits
    with residual_stream(model):
        model(input_ids=input_ids, attention_mask=mask)
    with steering(model, 1, torch.randn(64, dtype=torch.float64), start):  # (a constant vector would vanish in ln_f)
        steered = model(input_ids=input_ids, attention_mask=mask).logits
    after = model(input_ids=input_ids, attention_mask=mask).logits
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    assert [dict(block._forward_hooks) for block in decoder_blocks(model)] == hooks_before
    # causal: only positions >= start move
    row = 0
    torch.testing.assert_close(steered[row, : start[row]], before[row, : start[row]])
    assert not torch.allclose(steered[row, start[row] :], before[row, start[row] :])
    wrapped = get_peft_model(
        AutoModelForCausalLM.from_pretrained(model.name_or_path, dtype=torch.float64),
        LoraConfig(r=2, target_modules=["c_attn"], fan_in_fan_out=True),
    )
    assert len(decoder_blocks(wrapped)) == len(decoder_blocks(model))
    hooks_before = [dict(block._forward_hooks) for block in decoder_blocks(wrapped)]
    with residual_stream(wrapped) as captured:
        wrapped(input_ids=input_ids, attention_mask=mask)
    assert len(captured) == len(decoder_blocks(model))
    assert [dict(block._forward_hooks) for block in decoder_blocks(wrapped)] == hooks_before


def test_caa_vector_equals_brute_force_per_item_hidden_states(lm):
    model, tokenizer = lm
    prompts = ["Is the sky blue?\nAnswer:", "Do fish fly? Answer:", "Is 3 larger than 2?\nAnswer:"]
    positive = [p + (" Yes" if i != 1 else " No") for i, p in enumerate(prompts)]
    negative = [p + (" No" if i != 1 else " Yes") for i, p in enumerate(prompts)]
    batched = []
    for texts in (positive, negative):  # padded batches, read at each row's answer token
        input_ids, mask, last = encode(tokenizer, texts)
        batched.append(residual_at(model, lambda ids=input_ids, m=mask: model(input_ids=ids, attention_mask=m), last))
    caa = mean_difference(*batched)
    blocks = len(decoder_blocks(model))
    reference = torch.zeros(blocks, model.config.n_embd, dtype=torch.float64)
    for pos, neg in zip(positive, negative):  # one unpadded item at a time
        states = [
            model(input_ids=torch.tensor([tokenizer(t)["input_ids"]]), output_hidden_states=True).hidden_states
            for t in (pos, neg)
        ]
        for layer in range(blocks - 1):
            reference[layer] += (states[0][layer + 1][0, -1] - states[1][layer + 1][0, -1]) / len(prompts)
    torch.testing.assert_close(caa[: blocks - 1], reference[: blocks - 1])


def test_one_step_shift_matches_its_first_order_prediction(lm):
    model, tokenizer = lm
    input_ids, mask, last = encode(tokenizer, ["Is water wet? Answer: Yes", "Is fire cold? Answer: No"])
    answer = input_ids[torch.arange(2), last]

    def loss_of(call):  # −log p(a⁺ | x): the answer token predicted from the position before it
        logits = call(input_ids=input_ids, attention_mask=mask).logits
        return torch.nn.functional.cross_entropy(logits[torch.arange(2), last - 1], answer)

    def readout_of(call):
        with residual_stream(model) as captured:
            call(input_ids=input_ids, attention_mask=mask)
        return torch.stack([captured[i][torch.arange(2), last - 1].mean(0) for i in range(len(captured))])

    names = [n for n, _ in model.named_parameters() if ".h." in n]
    direction = step_direction(model, names, loss_of)
    errors = []
    for eta in (1e-3, 5e-4):
        shift = one_step_shift(model, direction, eta, readout_of)
        linear = first_order_shift(model, direction, eta, readout_of)
        assert cosine_per_layer(shift, linear).min() > 0.999
        errors.append(float((shift - linear).norm()))
    assert 3.0 < errors[0] / errors[1] < 5.0  # the remainder is second order in η
    # the optimizers' own first steps against their closed forms: Adam g/(|g| + ε), AdamW adds λθ on matrices
    gradient = loss_gradient(model, names, loss_of)
    adam = step_direction(model, names, loss_of, OptimizerSpec("adam", lr=1e-3))
    adamw = step_direction(model, names, loss_of, OptimizerSpec("adamw", lr=1e-3, weight_decay=0.1))
    momentum = step_direction(model, names, loss_of, OptimizerSpec("sgd", lr=1e-3, momentum=0.9))
    params = dict(model.named_parameters())
    for n in names:
        closed = gradient[n] / (gradient[n].abs() + 1e-8)
        torch.testing.assert_close(adam[n], closed, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(
            adamw[n], closed + (0.1 * params[n].detach() if params[n].ndim >= 2 else 0), rtol=1e-9, atol=1e-9
        )
        torch.testing.assert_close(momentum[n], gradient[n], rtol=1e-9, atol=1e-12)  # the buffer starts at g
        torch.testing.assert_close(direction[n], gradient[n], rtol=1e-9, atol=1e-12)


def test_random_direction_cosines_have_rms_one_over_sqrt_d():
    reference = torch.randn(3, 400, dtype=torch.float64)
    baseline = random_cosine_baseline(reference, samples=4000, seed=1)
    torch.testing.assert_close(baseline["rms"], baseline["expected_rms"], rtol=0.05, atol=0)
    assert (baseline["mean_abs"] < baseline["rms"]).all()  # E|c| = sqrt(2/π)/sqrt(d) < RMS
    assert cosine_per_layer(reference, 2 * reference).allclose(torch.ones(3, dtype=torch.float64))


def tiny_decoder(family: str):
    """A 2-block random decoder of each cache layout the steering configs meet."""
    from transformers import Gemma3TextConfig, LlamaConfig, Qwen2Config

    torch.manual_seed(0)
    common = {
        "vocab_size": 97,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
    }
    config = {
        "llama": lambda: LlamaConfig(**common),
        "qwen2": lambda: Qwen2Config(**common),
        "gemma3": lambda: Gemma3TextConfig(
            **common, head_dim=8, sliding_window=4, layer_types=["sliding_attention", "full_attention"]
        ),
    }[family]()
    return AutoModelForCausalLM.from_config(config, dtype=torch.float64).eval()


@pytest.mark.parametrize("family", ["gpt2", "llama", "qwen2", "gemma3"])
def test_cached_steered_logits_equal_full_sequence_steering(family, lm):
    from loclin.lightning_modules.activations import steered_last_logits

    model = lm[0] if family == "gpt2" else tiny_decoder(family)
    tokens = torch.randint(0, 97, (9,), generator=torch.Generator().manual_seed(1))
    d = model.config.hidden_size
    vectors = torch.randn(5, d, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    vectors[0] = 0
    cached = steered_last_logits(model, 1, tokens, vectors)
    for row, vector in enumerate(vectors):  # reference: the whole sequence, steered from its last position
        with torch.no_grad(), steering(model, 1, vector, torch.tensor([len(tokens) - 1])):
            full = model(input_ids=tokens[None]).logits[0, -1]
        torch.testing.assert_close(cached[row], full, rtol=1e-9, atol=1e-9)
    with torch.no_grad():
        torch.testing.assert_close(cached[0], model(input_ids=tokens[None]).logits[0, -1], rtol=1e-9, atol=1e-9)
    assert not torch.allclose(cached[1], cached[0])


def test_answer_residuals_reads_several_positions_in_one_pass(lm):
    from loclin.datamodules.contrast import ContrastItem, encode_contrasts
    from loclin.lightning_modules.activations import answer_residuals

    model, tokenizer = lm
    batch = encode_contrasts(
        tokenizer,
        [ContrastItem("Is the sky blue?\nAnswer:", " Yes", " No"), ContrastItem("Do fish fly? Answer:", " No", " Yes")],
    )
    both = answer_residuals(model, model, batch, "positive", (0, -1))  # P × L × B × d
    hidden = model(input_ids=batch["positive"], attention_mask=batch["mask"], output_hidden_states=True).hidden_states
    rows = torch.arange(2)
    for index, offset in enumerate((0, -1)):
        torch.testing.assert_close(both[index], answer_residuals(model, model, batch, "positive", offset))
        for layer in range(len(decoder_blocks(model)) - 1):
            torch.testing.assert_close(both[index, layer], hidden[layer + 1][rows, batch["answer_pos"] + offset])
