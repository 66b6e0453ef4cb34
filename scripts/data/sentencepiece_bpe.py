"""Learn a SentencePiece BPE model on text files, or encode standard input into its pieces.

The CNN/DailyMail recipe's subword step: one model learned on articles and summaries together (so
source and target share a dictionary and ``--share-all-embeddings`` holds); ``fairseq-generate
--bpe sentencepiece --sentencepiece-model MODEL`` turns the pieces back into text.

    python -m scripts.data.sentencepiece_bpe train --model spm --vocab-size 32000 train.source train.target
    python -m scripts.data.sentencepiece_bpe encode --model spm.model < test.source > test.bpe.source
"""

import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="learn MODEL.model and MODEL.vocab from the given files")
    train.add_argument("--model", required=True, help="output prefix")
    train.add_argument("--vocab-size", type=int, required=True)
    train.add_argument("--max-sentences", type=int, default=5_000_000, help="lines sampled for learning")
    train.add_argument("inputs", nargs="+")
    encode = sub.add_parser("encode", help="standard input -> space-separated pieces, line by line")
    encode.add_argument("--model", required=True, help="a .model file")
    args = parser.parse_args(argv)

    import sentencepiece as spm

    if args.command == "train":
        spm.SentencePieceTrainer.train(
            input=",".join(args.inputs), model_prefix=args.model, vocab_size=args.vocab_size, model_type="bpe",
            character_coverage=1.0, input_sentence_size=args.max_sentences, shuffle_input_sentence=True,
            max_sentence_length=100_000, hard_vocab_limit=False, minloglevel=1,
            # fairseq's dictionary has its own <s> </s> <pad> <unk>: keep only <unk> here
            bos_id=-1, eos_id=-1, pad_id=-1, unk_id=0)
    else:
        model = spm.SentencePieceProcessor(model_file=args.model)
        for line in sys.stdin:
            sys.stdout.write(" ".join(model.encode(line.rstrip("\n"), out_type=str)) + "\n")


if __name__ == "__main__":
    main()
