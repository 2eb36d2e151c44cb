"""config.example.yaml: every key at its default, and the shop example it quotes."""

from __future__ import annotations

from pathlib import Path

import yaml

from incr_cli.config import Config, load_config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config.example.yaml"


def test_the_example_config_holds_every_default() -> None:
    assert load_config(EXAMPLE) == Config()


def test_its_shop_data_block_is_the_online_retail_example() -> None:
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    start = lines.index("# ingest:")
    block = []
    for line in lines[start:]:
        if not line.startswith("#"):
            break
        block.append(line.removeprefix("#").removeprefix(" "))
    quoted = yaml.safe_load("\n".join(block))
    shipped = yaml.safe_load((ROOT / "examples" / "online-retail.yaml").read_text("utf-8"))

    assert quoted == shipped
    assert load_config(ROOT / "examples" / "online-retail.yaml").ingest.feedback == "quantity"
