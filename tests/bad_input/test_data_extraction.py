"""Bad-input rows: the information-extraction loaders of kexue.data (kexue.data.extraction)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from _matrix import Bad, check

from kexue.data import (
    Answer,
    MissingData,
    QAExample,
    load_conll2003,
    load_duee,
    load_duee_schema,
    load_dureader_robust,
    load_phee,
    load_squad,
    load_webnlg,
    load_webnlg_relations,
    split_by_article,
)


def _in_tmp(fn: Callable[[Path], object]) -> Callable[[], object]:
    """A row's call: ``fn`` given a fresh temporary folder, removed afterwards."""
    def call() -> object:
        with tempfile.TemporaryDirectory() as d:
            return fn(Path(d))
    return call


def _with(rel: str, text: str, load: Callable[[Path], object]) -> Callable[[], object]:
    """``load(root)`` on a temporary data folder holding only ``rel`` with ``text``."""
    def fn(root: Path) -> object:
        path = root / rel
        path.parent.mkdir(parents=True)
        path.write_text(text, encoding="utf-8")
        return load(root)
    return _in_tmp(fn)


def _qa(title: str, i: int = 0) -> QAExample:
    return QAExample(f"q{i}", title, "a context", "a question?", (Answer("context", 2),))


TWO = [_qa("A", 0), _qa("A", 1), _qa("B", 2)]
D = "kexue.data."
ROOT = r"expected root to be a path \(str or os\.PathLike\), got 3 \(int\)"
PHEE_REC = {"id": "1", "context": "aspirin caused rash", "annotations": [{"events": [
    {"event_id": "E1", "event_type": "Adverse_event",
     "Trigger": {"text": [["caused"]], "start": [[8]], "entity_id": ["T1"]},
     "Effect": {"text": [["rash"]], "start": [[15, 19]], "entity_id": ["T2"]}}]}]}


def _missing(entry: str, name: str, load: Callable[[Path], object]) -> Bad:
    return Bad(D + entry, "set not in the data folder", _in_tmp(load), MissingData,
               rf"^data set '{name}' is not in .*: fetch it with `KEXUE_DATA=\S+ kexue data fetch {name}`")


ROWS = [
    Bad(D + "load_conll2003", "split 'validation'", lambda: load_conll2003("validation"), ValueError,
        r"^expected split to be one of \['train', 'dev', 'test'\], got 'validation'$"),
    Bad(D + "load_conll2003", "root not a path", lambda: load_conll2003(root=3), TypeError, ROOT),
    _missing("load_conll2003", "conll2003", lambda d: load_conll2003("dev", root=d)),
    Bad(D + "load_conll2003", "a line of 3 fields",
        _with("conll2003/test.txt", "EU NNP B-ORG\n", lambda d: load_conll2003("test", root=d)), ValueError,
        r"test\.txt, line 1: expected 4 space-separated fields \(word POS chunk NER\), got 3$"),
    Bad(D + "load_phee", "split 'val'", lambda: load_phee("val"), ValueError,
        r"^expected split to be one of \['train', 'dev', 'test'\], got 'val'$"),
    Bad(D + "load_phee", "root not a path", lambda: load_phee("dev", root=3), TypeError, ROOT),
    _missing("load_phee", "phee", lambda d: load_phee("test", root=d)),
    Bad(D + "load_phee", "pieces and starts of different lengths",
        _with("phee/dev.json", json.dumps(PHEE_REC), lambda d: load_phee("dev", root=d)), ValueError,
        r"dev\.json, line 1, Effect: expected as many starts and entity ids as texts, piece for piece"),
    Bad(D + "load_phee", "a record without annotations",
        _with("phee/dev.json", '{"id": "1", "context": "x"}\n', lambda d: load_phee("dev", root=d)), ValueError,
        r"dev\.json, line 1: expected a PHEE record .*got a record that does not fit \(KeyError: 'annotations'\)$"),
    Bad(D + "load_webnlg", "split 'dev'", lambda: load_webnlg("dev"), ValueError,
        r"^expected split to be one of \['train', 'val', 'test'\], got 'dev'$"),
    Bad(D + "load_webnlg", "variant 'WebNLG*'", lambda: load_webnlg("val", "WebNLG*"), ValueError,
        r"^expected variant to be one of \['exact', 'star'\], got 'WebNLG\*'$"),
    _missing("load_webnlg", "webnlg", lambda d: load_webnlg("val", root=d)),
    Bad(D + "load_webnlg", "a triple of two",
        _with("webnlg/WebNLG-star/val_triples.json", json.dumps([{"text": "a b", "triple_list": [["a", "r"]]}]),
              lambda d: load_webnlg("val", "star", root=d)), ValueError,
        r"val_triples\.json, record 0: expected a CasRel record .*\(TypeError: .*object"),
    Bad(D + "load_webnlg_relations", "variant 'partial'", lambda: load_webnlg_relations("partial"), ValueError,
        r"^expected variant to be one of \['exact', 'star'\], got 'partial'$"),
    Bad(D + "load_webnlg_relations", "root not a path", lambda: load_webnlg_relations(root=3), TypeError, ROOT),
    _missing("load_webnlg_relations", "webnlg", lambda d: load_webnlg_relations("star", root=d)),
    Bad(D + "load_webnlg_relations", "three maps",
        _with("webnlg/WebNLG/rel2id.json", "[{}, {}, {}]", lambda d: load_webnlg_relations(root=d)), ValueError,
        r"rel2id\.json: expected \[rel2id\] or \[id2rel, rel2id\], got list of 3$"),
    Bad(D + "load_squad", "root not a path", lambda: load_squad(3), TypeError, ROOT),
    _missing("load_squad", "squad_v1.1", lambda d: load_squad(d)),
    Bad(D + "load_squad", "an answer_start off its text",
        _with("squad_v1.1/dev-v1.1.json", json.dumps({"data": [{"title": "T", "paragraphs": [{"context": "abc", "qas": [
            {"id": "q", "question": "?", "answers": [{"text": "bc", "answer_start": 0}]}]}]}]}),
              lambda d: load_squad(d)), ValueError, r"question q: expected 'bc' at character 0, got 'ab'$"),
    Bad(D + "load_squad", "not SQuAD's layout", _with("squad_v1.1/dev-v1.1.json", "[1, 2]", lambda d: load_squad(d)),
        ValueError, r"dev-v1\.1\.json: expected SQuAD JSON .*\(TypeError: list indices"),
    Bad(D + "load_dureader_robust", "root not a path", lambda: load_dureader_robust(3), TypeError, ROOT),
    _missing("load_dureader_robust", "dureader_robust", lambda d: load_dureader_robust(d)),
    Bad(D + "load_dureader_robust", "an answer not in its context",
        _with("dureader_robust/dev.json", json.dumps({"data": [{"title": "", "paragraphs": [{"context": "甲乙", "qas": [
            {"id": "q", "question": "?", "answers": [{"text": "丙", "answer_start": -1}]}]}]}]}),
              lambda d: load_dureader_robust(d)), ValueError,
        r"question q: expected the answer '丙' in its context, got a context without it$"),
    Bad(D + "load_duee", "root not a path", lambda: load_duee(3), TypeError, ROOT),
    _missing("load_duee", "duee", lambda d: load_duee(d)),
    Bad(D + "load_duee", "a start off its argument",
        _with("duee/duee_dev.json", json.dumps({"text": "甲裁员乙", "id": "x", "event_list": [
            {"event_type": "组织关系-裁员", "trigger": "裁员", "trigger_start_index": 2, "arguments": []}]}),
              lambda d: load_duee(d)), ValueError, r"line 1: expected '裁员' at character 2, got '员乙'$"),
    Bad(D + "load_duee_schema", "root not a path", lambda: load_duee_schema(3), TypeError, ROOT),
    _missing("load_duee_schema", "duee", lambda d: load_duee_schema(d)),
    Bad(D + "load_duee_schema", "a record without role_list",
        _with("duee/duee_event_schema.json", '{"event_type": "x"}\n', lambda d: load_duee_schema(d)), ValueError,
        r"line 1: expected a DuEE schema record .*\(KeyError: 'role_list'\)$"),
    Bad(D + "split_by_article", "examples a dict", lambda: split_by_article({"q": _qa("A")}), TypeError,
        r"^expected examples to be a list of QAExample \(load_squad gives one\), got dict$"),
    Bad(D + "split_by_article", "examples of tuples", lambda: split_by_article([("q", "A")]), TypeError,
        r"^expected examples to be a list of QAExample .*got a list holding other things$"),
    Bad(D + "split_by_article", "one article", lambda: split_by_article([_qa("A"), _qa("A", 1)]), ValueError,
        r"^expected examples of at least 2 articles, got 1$"),
    Bad(D + "split_by_article", "n_test all the articles", lambda: split_by_article(TWO, n_test=2), ValueError,
        r"^expected n_test <= 1, got 2$"),
    Bad(D + "split_by_article", "n_test 0", lambda: split_by_article(TWO, n_test=0), ValueError,
        r"^expected n_test >= 1, got 0$"),
    Bad(D + "split_by_article", "seed a float", lambda: split_by_article(TWO, 1, seed=0.5), TypeError,
        r"^expected seed to be an integer, got 0\.5 \(float\)$"),
]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.id)
def test_refuses(row):
    check(row)
