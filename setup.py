"""lamda_jax: LaMDA (Thoppilan et al., 2022) in JAX/Flax."""

import setuptools

setuptools.setup(
    name='lamda_jax',
    version='0.1.0',
    description='A faithful JAX/Flax reimplementation of LaMDA: Language Models for Dialog '
                'Applications.',
    # configs/ stays at the top (`--config configs/tiny.py`) and installs as
    # lamda_jax.configs, so notebooks and other configs import it from any install.
    packages=setuptools.find_packages(include=['lamda_jax', 'lamda_jax.*']) + ['lamda_jax.configs'],
    package_dir={'lamda_jax.configs': 'configs'},
    package_data={'lamda_jax.serving': ['chat_page.html']},
    python_requires='>=3.11',
    # Lower bounds are the versions the test suite was run with.
    install_requires=[
        'absl-py>=2.1',
        'apache-beam>=2.77.0',  # prepares a big corpus's packed rows on Dataflow / Spark / Flink
        'alt-profanity-check>=1.9.1',  # an independent safety judge (scikit-learn, offline)
        'better-profanity>=0.7.0',
        'bm25s>=0.3.16',
        'chitchat-dataset>=0.9.0',
        'flax>=0.12.8',
        'grain>=0.2.18',  # reads packed rows from ArrayRecord: index shuffle, prefetch
        'importlib_resources>=6.0',  # TFDS resolves builder code paths through etils.epath
        'jax>=0.10.2',
        'matplotlib>=3.8',  # curves of runs as PNG (experiments/plot_run.py)
        'ml-collections>=1.1.0',
        'numpy>=2.0',
        'optax>=0.2.8',
        'orbax-checkpoint>=0.12.8',
        'sentencepiece>=0.2.0',
        'tensorboardX>=2.6.2',
        'tensorflow-datasets>=4.9.10',
        'tqdm>=4.66',
        'waitress>=3.0',  # the HTTP server of --mode serve: timeouts, connection limits
        'werkzeug>=3.1',
    ],
    extras_require={'dev': ['ipykernel>=6.29', 'nbclient>=0.10', 'nbformat>=5.10',  # notebooks
                            'openai>=1.0', 'packaging>=24', 'pytest>=8.0', 'pytest-xdist>=3.6',
                            'ruff>=0.15', 'scikit-learn>=1.5',
                            'selenium>=4.20']},  # drives Debian's chromium in the chat page test
)
