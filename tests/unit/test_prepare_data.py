"""The real-data preparation scripts, on tiny samples of the corpora's own formats (and PTB itself,
which is an installed package)."""

import pytest

from scripts.data import prepare_ptb
from scripts.data import prepare_trans_de_en as ding

# Lines in the format of the Ding dictionary (usr/share/trans/de-en of Debian's trans-de-en), taken
# from it and shortened: headwords, phrases and example sentences as aligned `|` alternatives.
DING_SAMPLE = """\
# Version :: devel 2023-01-30
# License :: GPL Version 2 or later; GNU General Public License
Antwort {f} (auf etw.) (Lösungsansatz) [übtr.] | die Lösung des Rätsels | Noch mehr Geld ist nicht die Antwort auf dieses Problem. | Für dieses Dilemma gibt es keine einfachen Antworten. :: answer (to sth.) [fig.] | the answer to this riddle | More money is not the answer to this problem. | The dilemma has no simple answers.
Antrag {m} | Anträge {pl} | Antragsberechtigt ist … :: application | applications | Application may be filed by …
eine Anzahlung leisten {vt} [fin.] | Keine Anzahlung (nötig). :: to pay down <> sth. | Nothing down.
Entschluss {m} | Mein Entschluss steht fest. :: decision | My mind is made up.; I’ve made up my mind.
Regen {m} | Es regnet in Strömen. [ugs.] :: rain | It is raining cats and dogs. [coll.]
Regenwetter {n} | Es regnet in Strömen. :: rainy weather | It is pouring with rain.
Kummer {m} | Sie hat großen Kummer. | Er hat keinen Kummer. :: grief | She is in great grief.
"""


def test_ding_keeps_aligned_sentence_pairs_and_drops_headwords_phrases_and_duplicates():
    pairs = ding.sentence_pairs(DING_SAMPLE.splitlines(keepends=True))
    assert pairs == [
        ("Noch mehr Geld ist nicht die Antwort auf dieses Problem.", "More money is not the answer to this problem."),
        ("Für dieses Dilemma gibt es keine einfachen Antworten.", "The dilemma has no simple answers."),
        ("Mein Entschluss steht fest.", "My mind is made up."),  # first of the `;` variants
        ("Es regnet in Strömen.", "It is raining cats and dogs."),  # labels stripped; the repeat dropped
    ]
    # "Keine Anzahlung (nötig)." has a two-word English side; the Kummer line's sides are not aligned


def test_ding_split_is_a_function_of_the_german_sentence_and_bpe_round_trips(tmp_path):
    pairs = [(f"Satz Nummer {i} ist hier.", f"Sentence number {i} is here.") for i in range(400)]
    counts = ding.write_splits(pairs, str(tmp_path / "a"))
    again = ding.write_splits(list(reversed(pairs)), str(tmp_path / "b"))
    assert counts == again and sum(counts.values()) == 400 and min(counts.values()) > 0
    for split in ding.SPLITS:  # the same sentences land in the same split whatever the file order
        a = set((tmp_path / "a" / f"{split}.de").read_text().splitlines())
        assert a == set((tmp_path / "b" / f"{split}.de").read_text().splitlines())
        de, en = ((tmp_path / "a" / f"{split}.{lang}").read_text().splitlines() for lang in ("de", "en"))
        assert [d.split()[2] for d in de] == [e.split()[2] for e in en]  # still aligned
    model = ding.train_and_apply_bpe(str(tmp_path / "a"), str(tmp_path), vocab_size=60)
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=model)
    raw = (tmp_path / "a" / "test.en").read_text().splitlines()
    pieces = (tmp_path / "bpe" / "test.en").read_text().splitlines()
    assert len(pieces) == len(raw) and [sp.decode(p.split()) for p in pieces] == raw


def test_ding_phrases_are_the_aligned_non_sentences_without_labels_first_variant_and_short():
    phrases = ding.phrase_pairs(DING_SAMPLE.splitlines(keepends=True))
    assert phrases == [
        ("Antwort (auf etw.) (Lösungsansatz)", "answer (to sth.)"),  # {f}, [übtr.], [fig.] removed wherever they stand
        ("die Lösung des Rätsels", "the answer to this riddle"),
        ("Antrag", "application"), ("Anträge", "applications"),  # "Antragsberechtigt ist …" has an ellipsis
        ("eine Anzahlung leisten", "to pay down <> sth."),
        ("Entschluss", "decision"), ("Regen", "rain"), ("Regenwetter", "rainy weather"),
    ]  # "Keine Anzahlung (nötig)." is a sentence (its English side is not): neither list; Kummer's sides: not aligned


def test_ding_phrases_join_the_training_split_only_within_its_vocabulary_and_never_a_held_out_sentence(tmp_path):
    sentences = [(f"Satz Nummer {i} ist hier.", f"Sentence number {i} is here.") for i in range(200)]
    held_out = next(de for de, _ in sentences if ding.split_of(de) == "test")
    extra = [("Satz", "sentence"), ("Nummer hier", "number here"), ("Haus", "house"),  # "Haus": no training word
             ("Satz", "phrase"),  # "phrase" is not in the English training sentences
             (held_out, "a phrase pair whose German is a test sentence")]
    counts = ding.write_splits(sentences, str(tmp_path), train_only=extra)
    plain = ding.write_splits(sentences, str(tmp_path / "plain"))
    train = list(zip(*((tmp_path / f"train.{lang}").read_text().splitlines() for lang in ("de", "en"))))
    assert counts == {**plain, "train": plain["train"] + 2}
    assert train[-2:] == [("Satz", "sentence"), ("Nummer hier", "number here")]
    for split in ("valid", "test"):  # held-out splits are the same as without phrases
        assert (tmp_path / f"{split}.de").read_text() == (tmp_path / "plain" / f"{split}.de").read_text()


def test_ptb_sample_in_the_packages_format_becomes_one_sentence_per_line(tmp_path):
    corpus = {"train": " a b <unk> \n c N d \n", "valid": " e f \n", "test": " g \n h i \n"}
    sizes = prepare_ptb.write_ptb(str(tmp_path), corpus)
    assert (tmp_path / "train.txt").read_text() == "a b <unk>\nc N d\n"
    assert sizes == {"train": (2, 6), "valid": (1, 2), "test": (2, 3)}
    with pytest.raises(ValueError, match="lacks the split"):
        prepare_ptb.write_ptb(str(tmp_path), {"train": "a\n"})


def test_ptb_from_the_installed_package_has_the_standard_sizes(tmp_path):
    sizes = prepare_ptb.write_ptb(str(tmp_path))
    assert {s: tokens for s, (_, tokens) in sizes.items()} == {"train": 887521, "valid": 70390, "test": 78669}
    vocab = set((tmp_path / "train.txt").read_text().split())
    assert len(vocab) == 9999 and "<unk>" in vocab  # 10k with the end of sentence
