"""The client's option flags against the server's one contract (``pipeline.options``): an option
the API gains is a flag of ``quickbg remove`` too, spelled and typed the same."""

from __future__ import annotations

from quickbg_client import cli
from quickbg_client.options import BOOLEAN_OPTIONS, OPTION_NAMES, form_fields

from removal.pipeline.options import Options


def test_the_client_offers_every_option_of_the_contract_in_its_order():
    contract = Options.contract()
    assert list(OPTION_NAMES) == [spec.name for spec in contract]
    assert set(BOOLEAN_OPTIONS) == {spec.name for spec in contract if spec.type == "boolean"}


def test_boolean_flags_are_sent_as_the_api_spells_them():
    args = cli._parser().parse_args(
        ["remove", "in.jpg", "-o", "out", "--add-shadow", "--no-decontaminate",
         "--no-semitransparency", "--crop-margin", "5%"])
    assert form_fields(cli._options(args)) == {
        "add_shadow": "true", "decontaminate": "false", "semitransparency": "false",
        "crop_margin": "5%"}
