"""scripts/data/prepare_wordnet_tasks.py on tiny samples in WordNet 3.0's data-file format (wndb(5WN)), written
here: real lines of the Debian package wordnet-base, and generated ones for sizes that fill every split."""

import json
import random

import pytest

from scripts.data import prepare_wordnet_tasks as wn
from tests.helpers import run_main

LICENSE = "  1 This software and database is being provided to you, the LICENSEE, by  \n  2 Princeton University \n"
# real lines of data.noun, data.verb, data.adj (the pointers shortened) and data.adv
ENTITY = ("00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 ~ 00002137 n 0000 ~ 04424418 n 0000 | that which is "
          "perceived or known or inferred to have its own distinct existence (living or nonliving)  \n")
BREATHE = ("00001740 29 v 04 breathe 0 take_a_breath 0 respire 0 suspire 3 002 * 00005041 v 0000 $ 00002325 v 0000 "
           "02 + 02 00 + 08 00 | draw air into, and expel out of, the lungs; \"I can breathe better when the air is "
           "clean\"; \"The patient is respiring\"  \n")
ABLE = ("00001740 00 a 01 able(a) 0 001 = 05200169 n 0000 | (usually followed by `to') having the necessary means or "
        "skill or know-how or authority to do something; \"able to swim\"; \"she was able to program her computer\"  \n")
CAPPELLA = "00001740 02 r 01 a_cappella 0 000 | without musical accompaniment; \"they performed a cappella\"  \n"
KINDS = {"n": [5, 6, 18, 20], "v": [29, 38]}  # noun.animal, noun.artifact, noun.person, noun.plant; verb.body, verb.motion


def synset_line(offset, lexnum, ss_type, words, gloss):
    pairs = " ".join(f"{w} {i % 16:x}" for i, w in enumerate(words))
    return f"{offset:08d} {lexnum:02d} {ss_type} {len(words):02x} {pairs} 000 | {gloss}  \n"


def write_sample(root, n=240, reverse=False):
    """data.noun, data.verb, data.adj, data.adv: n generated synsets per noun/verb file (distinct definitions,
    some lemmas with two senses, one definition shared by two synsets of one file and one by two files), plus
    the real lines above."""
    root.mkdir(parents=True, exist_ok=True)
    for ss_type, name, real in (("n", "data.noun", ENTITY), ("v", "data.verb", BREATHE)):
        lines = [real]
        for i in range(n):
            lexnum = KINDS[ss_type][i % len(KINDS[ss_type])]
            words = [f"{name[5:]}_{i}", f"syn{ss_type}{i}"] if i % 3 else [f"{name[5:]}_{i // 2}"]
            gloss = f"an instance called {lexnum * 1000 + i} of its kind; \"they saw one\""
            lines.append(synset_line(10000 + i, lexnum, ss_type, words, gloss))
        shared = f"a shared {ss_type} definition"
        lines.append(synset_line(90001, KINDS[ss_type][0], ss_type, [f"twin{ss_type}a"], shared))
        lines.append(synset_line(90002, KINDS[ss_type][0], ss_type, [f"twin{ss_type}b"], shared))
        lines.append(synset_line(90003, KINDS[ss_type][1], ss_type, ["clash"], "a clashing definition"))
        if reverse:
            lines.reverse()
        (root / name).write_text(LICENSE + "".join(lines), encoding="utf-8")
    (root / "data.adj").write_text(LICENSE + ABLE, encoding="utf-8")
    (root / "data.adv").write_text(LICENSE + CAPPELLA, encoding="utf-8")
    return root


def read(path):
    return path.read_text(encoding="utf-8").splitlines()


def test_a_data_line_gives_its_words_lexicographer_file_and_definition():
    s = wn.parse_data_line(BREATHE, "verb")
    assert (s.offset, s.lexname, s.words) == ("00001740", "verb.body", ["breathe", "take a breath", "respire", "suspire"])
    assert s.definition == "draw air into, and expel out of, the lungs"
    able = wn.parse_data_line(ABLE, "adj")
    assert (able.lexname, able.words) == ("adj.all", ["able"])  # the syntactic marker (a) removed
    assert able.definition == "(usually followed by `to') having the necessary means or skill or know-how or authority to do something"
    assert wn.parse_data_line(ENTITY, "noun").lexname == "noun.Tops"
    assert wn.parse_data_line(CAPPELLA, "adv").words == ["a cappella"]
    assert wn.parse_data_line(LICENSE.splitlines(True)[0], "noun") is None
    assert len(wn.LEXNAMES) == 45 and wn.LEXNAMES[44] == "adj.ppl"
    with pytest.raises(ValueError, match="not a WordNet data line"):
        wn.parse_data_line("just some text\n", "noun")


@pytest.mark.parametrize("gloss, definition", [
    ('a workplace; as in the expression "on the job";', 'a workplace; as in the expression "on the job"'),
    ('act of assembling: "mobilization of the troops"', "act of assembling"),
    ('significant progress (especially in the phrase "make strides"); "big strides"',
     'significant progress (especially in the phrase "make strides")'),  # a quote inside the definition stays
    ("a domestic animal;  kept as a pet ; ", "a domestic animal; kept as a pet"),
    ('"sentence"; "another"', ""),
])
def test_the_definition_is_the_gloss_before_its_examples(gloss, definition):
    assert wn.definition_of(gloss) == definition


def test_both_tasks_are_written_split_by_hash_with_every_guarantee(tmp_path):
    sample = write_sample(tmp_path / "wn")
    proc = run_main(wn.main, sample, tmp_path / "out")
    sizes = json.loads((tmp_path / "out" / "sizes.json").read_text())
    assert "supersense: train" in proc.stdout and "glosses_train.txt:" in proc.stdout
    out = tmp_path / "out"

    # supersense: nouns and verbs only (the adjective and adverb are not read), one line per distinct definition
    texts = {split: read(out / "supersense" / f"{split}.input0") for split in wn.SPLITS}
    labels = {split: read(out / "supersense" / f"{split}.label") for split in wn.SPLITS}
    assert all(len(texts[s]) == len(labels[s]) == sizes["supersense"][s] > 0 for s in wn.SPLITS)
    every = sum(texts.values(), [])
    assert len(every) == len(set(every)) == 2 * 240 + 2 + 2  # the twin definitions once; the clash dropped
    assert "a shared n definition" in every and "a clashing definition" not in every
    assert sizes["supersense"]["ambiguous_definitions_dropped"] == 1
    label_of = dict(zip(every, sum(labels.values(), [])))
    assert label_of["that which is perceived or known or inferred to have its own distinct existence (living or nonliving)"] == "noun.Tops"
    assert label_of["an instance called 38007 of its kind"] == "verb.motion"
    assert set(label_of.values()) == {"noun.Tops", "noun.animal", "noun.artifact", "noun.person", "noun.plant",
                                      "verb.body", "verb.motion"}
    assert not any('"' in t or "able" in t for t in every)  # no examples, no adjective
    for split in wn.SPLITS:
        assert all(wn.split_of(t) == split for t in texts[split])

    # definition_match: balanced pairs; no lemma in two splits; positives are its senses, negatives not
    pairs = {split: list(zip(*(read(out / "definition_match" / f"{split}.{c}") for c in ("input0", "input1", "label"))))
             for split in wn.SPLITS}
    senses = {}
    for s in wn.read_wordnet(str(sample), ["noun", "verb"]):
        for w in s.words:
            senses.setdefault(w.lower(), set()).add(s.definition)
    lemmas = {}
    for split, rows in pairs.items():
        assert rows and len(rows) == sizes["definition_match"][split]
        assert [r[2] for r in rows].count("1") == [r[2] for r in rows].count("0")
        for lemma, definition, label in rows:
            lemmas.setdefault(lemma, set()).add(split)
            assert (definition in senses[lemma.lower()]) == (label == "1"), (lemma, definition, label)
            assert not wn.shares_word(lemma, definition)
    assert all(len(splits) == 1 for splits in lemmas.values())
    assert "breathe" in lemmas and "take a breath" in lemmas  # words of a synset, underscores as spaces

    # glosses for pre-training: train definitions only, none of any valid or test split
    glosses = set(read(out / "glosses_train.txt"))
    held_out = set(texts["valid"] + texts["test"]) | {r[1] for s in ("valid", "test") for r in pairs[s]}
    assert glosses and not glosses & held_out and glosses <= set(texts["train"]) | {r[1] for r in pairs["train"]}
    assert sizes["glosses_train"]["lines"] == len(glosses)


def test_the_output_does_not_depend_on_file_order_and_caps_keep_the_balance(tmp_path):
    run_main(wn.main, write_sample(tmp_path / "a"), tmp_path / "out_a")
    run_main(wn.main, write_sample(tmp_path / "b", reverse=True), tmp_path / "out_b")
    for task, columns in (("supersense", ("input0", "label")), ("definition_match", ("input0", "input1", "label"))):
        for split in wn.SPLITS:
            for column in columns:
                name = f"{task}/{split}.{column}"
                assert read(tmp_path / "out_a" / name) == read(tmp_path / "out_b" / name), name
    assert read(tmp_path / "out_a" / "glosses_train.txt") == read(tmp_path / "out_b" / "glosses_train.txt")

    run_main(wn.main, tmp_path / "a", tmp_path / "capped", "--max-train", "11", "--max-eval", "5", "--lowercase")
    assert len(read(tmp_path / "capped/supersense/train.input0")) == 11
    assert len(read(tmp_path / "capped/supersense/valid.label")) == 5
    labels = read(tmp_path / "capped/definition_match/train.label")
    assert len(labels) == 10 and labels.count("1") == 5  # whole lemmas: a positive and a negative each
    full = [t.lower() for t in read(tmp_path / "out_a/supersense/train.input0")]
    assert read(tmp_path / "capped/supersense/train.input0") == full[:11]  # the first in hash order, lower-cased


def test_all_four_parts_of_speech_give_the_adjective_and_adverb_files(tmp_path):
    run_main(wn.main, write_sample(tmp_path / "wn", n=60), tmp_path / "out", "--pos", "noun,verb,adj,adv")
    labels = set(sum((read(tmp_path / "out/supersense" / f"{s}.label") for s in wn.SPLITS), []))
    assert {"adj.all", "adv.all"} <= labels


def test_bad_input_is_refused_naming_it(tmp_path):
    proc = run_main(wn.main, tmp_path, tmp_path / "out", check=False)
    assert proc.returncode == 1 and "no data.noun in" in proc.stderr and "wordnet-base" in proc.stderr
    proc = run_main(wn.main, tmp_path, tmp_path / "out", "--pos", "noun,adverb", check=False)
    assert proc.returncode == 2 and "unknown part(s) of speech ['adverb']" in proc.stderr


def test_shares_word_catches_repeats_and_inflections_only():
    assert wn.shares_word("efferent fiber", "a nerve fiber that carries impulses")
    assert wn.shares_word("fiber", "bundles of fibers")
    assert not wn.shares_word("dog", "a domesticated canine kept as a pet")
    assert not wn.shares_word("a cappella", "a style of singing")  # words under 3 letters do not count
    rng = random.Random(0)
    assert not any(wn.shares_word(f"lemma{rng.randrange(99)}", "an instance called 5 of its kind") for _ in range(20))
