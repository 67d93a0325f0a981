"""The information-extraction loaders (kexue.data.extraction) on the real files of the data folder: the counts of
the data README (section 4), every character offset slicing its text, and a missing set raising MissingData with the
fetch command; malformed files on tiny copies in a scratch folder."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from kexue.data import MissingData
from kexue.data import extraction as X


@pytest.fixture(scope="module")
def phee_train(data_root):
    return X.load_phee("train")


@pytest.fixture(scope="module")
def squad(data_root):
    return X.load_squad()


def _entities(sentences: list[X.TaggedSentence]) -> Counter:
    return Counter(t[2:] for s in sentences for t in s.tags if t.startswith("B-"))


def test_conll2003_train(data_root):
    train = X.load_conll2003("train")
    assert len(train) == 14_041 and sum(len(s.tokens) for s in train) == 203_621
    assert len({s.document for s in train}) == 946 and train[-1].document == 945
    assert _entities(train) == {"PER": 6_600, "LOC": 7_140, "ORG": 6_321, "MISC": 3_438}
    first = train[0]
    assert first.tokens[:3] == ("EU", "rejects", "German") and first.tags[:3] == ("B-ORG", "O", "B-MISC")
    assert first.pos[:2] == ("NNP", "VBZ") and first.chunks[:2] == ("B-NP", "B-VP") and first.document == 0
    assert all(len(s.tokens) == len(s.tags) == len(s.pos) == len(s.chunks) > 0 for s in train)
    assert not any("-DOCSTART-" in s.tokens for s in train)
    # IOB2: an I- tag continues an entity of its own type
    for s in train:
        for prev, tag in zip(("O", *s.tags), s.tags):
            if tag.startswith("I-"):
                assert prev[2:] == tag[2:]


@pytest.mark.slow  # with the train file above, the whole set takes more than the default suite's few seconds
@pytest.mark.parametrize(("split", "sentences", "tokens", "documents", "entities"),
                         [("dev", 3_250, 51_362, 216, 5_942), ("test", 3_453, 46_435, 231, 5_648)])
def test_conll2003_dev_test(data_root, split, sentences, tokens, documents, entities):
    data = X.load_conll2003(split)
    assert (len(data), sum(len(s.tokens) for s in data), len({s.document for s in data}),
            sum(_entities(data).values())) == (sentences, tokens, documents, entities)


def _mentions(event: X.Event) -> list[X.Argument]:
    return [event.trigger, *event.arguments, *(b for c in event.combinations for b in (c.trigger, *c.arguments))]


def _check_phee_offsets(data: list[X.EventSentence]) -> float:
    """Every piece of every mention slices its text; returns the share of mentions with several pieces."""
    pieces = mentions = 0
    for x in data:
        for e in x.events:
            for a in _mentions(e):
                assert len(a.pieces) == len(a.text) >= 1
                assert all(x.text[s:t] == piece for (s, t), piece in zip(a.pieces, a.text, strict=True))
                assert (a.start, a.end) == (min(p[0] for p in a.pieces), max(p[1] for p in a.pieces))
                mentions += 1
                pieces += len(a.pieces) > 1
    return pieces / mentions


def test_phee_train_counts_and_offsets(phee_train):
    assert (len(phee_train), sum(len(x.events) for x in phee_train)) == (2_898, 3_006)
    assert Counter(e.event_type for x in phee_train for e in x.events) == {"Adverse_event": 2_710,
                                                                         "Potential_therapeutic_event": 296}
    assert 0.01 < _check_phee_offsets(phee_train) < 0.05  # "about 3 % of spans have 2-4 pieces"


@pytest.mark.slow  # reads the three splits
def test_phee_all_splits(phee_train):
    phee = {"train": phee_train, "dev": X.load_phee("dev"), "test": X.load_phee("test")}
    counts = {s: (len(d), sum(len(x.events) for x in d)) for s, d in phee.items()}
    assert counts == {"train": (2_898, 3_006), "dev": (961, 1_003), "test": (968, 1_010)}
    roles = Counter(a.role for d in phee.values() for x in d for e in x.events  # events having the role, as the
                    for a in {a.role: a for a in e.arguments}.values())     # README counts them
    assert roles["Treatment"] == 5_018 and roles["Treatment.Drug"] == 4_961 and roles["Effect"] == 4_593
    assert roles["Subject"] == 2_424 and roles["Treatment.Disorder"] == 1_624 and roles["Subject.Age"] == 692
    for d in phee.values():
        _check_phee_offsets(d)


def test_phee_structure(phee_train):
    x = phee_train[0]
    assert x.id == "8908396_3" and len(x.events) == 1
    e = x.events[0]
    assert (e.event_type, e.event_id, e.trigger) == ("Adverse_event", "E1", X.Argument("Trigger", ((162, 169),),
                                                                                         ("induced",), "T4"))
    got = {(a.role, a.text) for a in e.arguments}
    assert got == {("Treatment", ("insulin",)), ("Treatment.Drug", ("insulin",)),
                   ("Treatment.Disorder", ("diabetic",)), ("Effect", ("lipoatrophies",))}
    values = Counter((a.role, a.value) for s in phee_train for ev in s.events for a in ev.arguments
                     if a.value is not None)
    assert {r for r, _ in values} == {"Speculated", "Negated", "Severity"} and values["Negated", True] == 40
    # a discontinuous span keeps its pieces in the annotation's order, which is not always the text's
    split = next(a for s in phee_train for ev in s.events for a in ev.arguments if a.pieces[0] > a.pieces[-1])
    assert split.start == split.pieces[-1][0] and split.end == split.pieces[0][1]
    combos = [c for s in phee_train for ev in s.events for c in ev.combinations]
    assert combos and all(c.event_type == "Combination" and {a.role for a in c.arguments} == {"Drug"}
                          for c in combos)


WEBNLG = {("exact", "train"): (5_019, 11_313, 211), ("exact", "val"): (500, 1_224, 144),
          ("exact", "test"): (703, 1_607, 149), ("star", "train"): (5_019, 11_776, 170),
          ("star", "val"): (500, 1_118, 110), ("star", "test"): (703, 1_591, 125)}


@pytest.mark.parametrize(("variant", "split"), [
    pytest.param(v, s, marks=[pytest.mark.slow] if s != "val" else []) for v, s in WEBNLG])
def test_webnlg(data_root, variant, split):
    rel2id = X.load_webnlg_relations(variant)
    assert len(rel2id) == {"exact": 216, "star": 171}[variant] and sorted(rel2id.values()) == list(range(len(rel2id)))
    data = X.load_webnlg(split, variant)
    preds = {t.predicate for s in data for t in s.triples}
    assert (len(data), sum(len(s.triples) for s in data), len(preds)) == WEBNLG[variant, split]
    assert preds <= set(rel2id)
    assert all(t.subject in s.text and t.object in s.text for s in data for t in s.triples)
    if variant == "star":  # only the last word of each entity
        assert all(" " not in t.subject and " " not in t.object for s in data for t in s.triples)


def test_squad_and_split_by_article(squad):
    assert len(squad) == 10_570 and len({e.title for e in squad}) == 48
    assert len({(e.title, e.context) for e in squad}) == 2_067 and sum(len(e.answers) for e in squad) == 34_726
    assert all(e.context[a.start:a.start + len(a.text)] == a.text for e in squad for a in e.answers)
    assert len({e.id for e in squad}) == len(squad)
    split = X.split_by_article(squad, n_test=10, seed=0)
    train_titles, test_titles = {e.title for e in split.train}, {e.title for e in split.test}
    assert len(train_titles) == 38 and len(test_titles) == 10 and not train_titles & test_titles
    assert len(split.train) + len(split.test) == len(squad)
    assert not {e.context for e in split.train} & {e.context for e in split.test}
    assert X.split_by_article(squad, 10, seed=0) == split and X.split_by_article(squad, 10, seed=1) != split


def test_dureader_robust_and_duee(data_root):
    dr = X.load_dureader_robust()
    assert len(dr) == 1_417 and sum(len(e.answers) for e in dr) == 1_962 and {e.title for e in dr} == {""}
    assert all(e.context.find(a.text) == a.start >= 0 for e in dr for a in e.answers)
    duee = X.load_duee()
    events = [ev for s in duee for ev in s.events]
    assert len(duee) == 1_498 and len(events) == 1_790 and sum(len(ev.arguments) for ev in events) == 3_696
    for s in duee:
        for ev in s.events:
            for a in (ev.trigger, *ev.arguments):
                (start, end), = a.pieces
                assert s.text[start:end] == a.text[0]
    schema = X.load_duee_schema()
    assert len(schema) == 65 and sum(len(r) for r in schema.values()) == 217
    assert {ev.event_type for ev in events} == set(schema)
    assert all(a.role in schema[ev.event_type] for ev in events for a in ev.arguments)


LOADERS = [("conll2003", lambda r: X.load_conll2003("dev", root=r)), ("phee", lambda r: X.load_phee("dev", root=r)),
           ("webnlg", lambda r: X.load_webnlg("val", "star", root=r)),
           ("webnlg", lambda r: X.load_webnlg_relations(root=r)), ("squad_v1.1", lambda r: X.load_squad(root=r)),
           ("dureader_robust", lambda r: X.load_dureader_robust(root=r)), ("duee", lambda r: X.load_duee(root=r)),
           ("duee", lambda r: X.load_duee_schema(root=r))]


@pytest.mark.parametrize(("name", "load"), LOADERS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(LOADERS)])
def test_missing_set_names_the_fetch_command(tmp_path, monkeypatch, name, load):
    monkeypatch.setenv("KEXUE_DATA", str(tmp_path))
    with pytest.raises(MissingData) as e:
        load(None)
    assert e.value.name == name and e.value.command == f"kexue data fetch {name}"
    with pytest.raises(MissingData) as e:
        load(tmp_path / "elsewhere")
    assert e.value.command == f"KEXUE_DATA={tmp_path / 'elsewhere'} kexue data fetch {name}"


def _write(root, rel: str, text: str):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_malformed_files_name_file_and_place(tmp_path):
    path = _write(tmp_path, "conll2003/dev.txt", "-DOCSTART- -X- -X- O\n\nEU NNP B-ORG\n")
    with pytest.raises(ValueError, match=rf"^{path}, line 3: expected 4 space-separated fields .*got 3$"):
        X.load_conll2003("dev", root=tmp_path)
    rec = {"id": "1", "context": "aspirin caused rash", "annotations": [{"events": [
        {"event_id": "E1", "event_type": "Adverse_event", "Trigger": {"text": [["caused"]], "start": [[8]],
                                                                      "entity_id": ["T1"]},
         "Effect": {"text": [["rash"]], "start": [[14]], "entity_id": ["T2"]}}]}]}
    path = _write(tmp_path, "phee/dev.json", json.dumps(rec) + "\n")
    with pytest.raises(ValueError, match=rf"^{path}, line 1, Effect: expected 'rash' at character 14, got ' ras'$"):
        X.load_phee("dev", root=tmp_path)
    path = _write(tmp_path, "phee/dev.json", "{not json\n")
    with pytest.raises(ValueError, match=rf"^{path}, line 1: expected a JSON record"):
        X.load_phee("dev", root=tmp_path)
    _write(tmp_path, "webnlg/WebNLG/val_triples.json", json.dumps([{"text": "A b", "triple_list": [["A", "r", "c"]]}]))
    with pytest.raises(ValueError, match=r"record 0: expected the object 'c' in the text, got 'A b'$"):
        X.load_webnlg("val", root=tmp_path)


def test_rel2id_shapes(tmp_path):
    _write(tmp_path, "webnlg/WebNLG/rel2id.json", json.dumps([{"a": 0, "b": 1}]))
    _write(tmp_path, "webnlg/WebNLG-star/rel2id.json", json.dumps([{"0": "a", "1": "b"}, {"a": 0, "b": 1}]))
    assert X.load_webnlg_relations("exact", tmp_path) == X.load_webnlg_relations("star", tmp_path) == {"a": 0, "b": 1}
    path = _write(tmp_path, "webnlg/WebNLG-star/rel2id.json", json.dumps([{"0": "b", "1": "a"}, {"a": 0, "b": 1}]))
    with pytest.raises(ValueError, match=rf"^{path}: expected \[id2rel, rel2id\] that agree"):
        X.load_webnlg_relations("star", tmp_path)
    path = _write(tmp_path, "webnlg/WebNLG/rel2id.json", json.dumps({"a": 0}))
    with pytest.raises(ValueError, match=rf"^{path}: expected \[rel2id\] or \[id2rel, rel2id\], got dict"):
        X.load_webnlg_relations("exact", tmp_path)
