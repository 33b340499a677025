"""A hostile runs folder for the dashboard tests: real engine runs whose every untrusted string carries markup.

:func:`build` writes, under a runs folder whose own name carries markup, engine runs on the teaching
world (tiny model, 3 rounds) in which every prompt id, prompt and answer carries :data:`HOSTILE`: a
markdown image and link to an external address, ``:red[...]``, KaTeX, an ``<img>`` and a ``<script>``
tag, a bare URL, ``www.``, an e-mail address, emoji and material-icon shortcodes, an ESC byte and a
right-to-left override. Besides the readable runs (random, BAL-PM): a copy of the random run whose
status.json holds a hostile error (the engine's own ``RunWriter.fail``), one whose folder was renamed to a hostile name
(:data:`FOLDER`: no ``/`` in a folder name, so its URLs use the slash-less ``http:host`` form that
browsers still follow) and one whose config.yaml holds a hostile policy name (a config string shown in
the error). Used by tests/test_dashboard_hostile.py (AppTest) and tests/test_dashboard_hostile_browser.py.
"""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import yaml

from balpm.config import RunConfig
from balpm.experiment import loop, runs

EVIL_HOST = "203.0.113.9"  # TEST-NET-3: never routed; a request to it is the failure the tests look for
HOSTILE = (f"![x](http://{EVIL_HOST}/x.png) [link](http://{EVIL_HOST}/l) :red[boom] $\\frac{{1}}{{2}}$ "
           f"<img src=http://{EVIL_HOST}/y> <script>alert(1)</script> http://{EVIL_HOST}/z www.example.com "
           "mail@example.com :smile: :material/home: \x1b[31m \u202eevil")
FOLDER = (f"![x](http:{EVIL_HOST}) [l](https:{EVIL_HOST}) :red[boom] $x^2$ <img src=http:{EVIL_HOST}> "
          "<script> www.example.com :smile: \x1b")
ROOT = f"root ![r](http:{EVIL_HOST}) :red[root] $r$ www.example.com :tada:"
# what must never appear raw in rendered markdown (outside code spans): each is markup from the data
RAW_MARKUP = ("![", "](", "<img", "<script", ":red[", "$\\frac", "$x^2$", "http://", "http:" + EVIL_HOST,
              "www.example", "mail@example", ":smile:", ":tada:", ":material/", "\x1b", "\u202e")

TINY = RunConfig().replace(
    model={"hidden": (32, 8), "ensemble_size": 3, "max_epochs": 3, "lr": 3e-3, "batch_size": 16, "device": "cpu"},
    loop={"initial": 20, "batch_size": 20, "rounds": 3},
)


def _hostile_inputs(cfg: RunConfig):
    """The teaching world's table and features with every prompt id, prompt and answer made hostile
    (prompt ids stay unique and match the features)."""
    table, features = loop.load_inputs(cfg, progress=False)
    new_id = {pid: f"{HOSTILE} {pid}" for pid in table["prompt_id"].unique()}
    table = table.assign(prompt_id=table["prompt_id"].map(new_id), prompt=HOSTILE + " " + table["prompt"],
                         chosen=HOSTILE + " " + table["chosen"], rejected=table["rejected"] + " " + HOSTILE)
    ids = np.array([new_id[str(p)] for p in features.prompt_ids], dtype=object)
    return table, dataclasses.replace(features, prompt_ids=ids)


def build(parent: Path) -> Path:
    """The hostile runs folder under ``parent`` (see the module docstring); returns its path."""
    root = Path(parent) / ROOT
    root.mkdir(parents=True)
    table, features = _hostile_inputs(TINY)
    for policy, seed in (("random", 0), ("balpm", 0)):
        loop.run(TINY.replace(acquisition={"policy": policy}, loop={"seed": seed}), root, table=table,
                 features=features, progress=False)
    source = root / runs.default_run_id(TINY.replace(acquisition={"policy": "random"}, loop={"seed": 0}))
    shutil.copytree(source, root / "random-s0-failed-copy")  # also a duplicate of random seed 0
    runs.RunWriter(root, "random-s0-failed-copy").fail(RuntimeError(HOSTILE))  # the engine writes the error
    shutil.copytree(source, root / FOLDER)  # a renamed copy: listed, never read
    bad_config = root / "hostile-config"
    shutil.copytree(source, bad_config)
    doc = yaml.safe_load((bad_config / "config.yaml").read_text())
    doc["acquisition"]["policy"] = HOSTILE
    (bad_config / "config.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True))
    return root
