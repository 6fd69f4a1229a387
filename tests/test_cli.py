"""tfsp.cli: the argument parser every CLI uses, its suggestions and its type checks."""

import argparse

import pytest

from tfsp.cli import SuggestingParser, non_negative_int, positive_int, probability, suggest


def _parser() -> SuggestingParser:
    parser = SuggestingParser(prog="tool")
    parser.add_argument("--model", required=True)
    parser.add_argument("--source")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--offset", type=float)
    parser.add_argument("names", nargs="*")
    return parser


def _error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        _parser().parse_args(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_suggest_names_the_closest_choice_or_nothing():
    assert suggest("int9", ["fp32", "fp16", "int8"]) == " (did you mean int8?)"
    assert suggest("zzzz", ["fp32", "int8"]) == ""


@pytest.mark.parametrize("argv, hint", [
    (["--model", "m", "--sorce", "x"], "unrecognized arguments: --sorce (did you mean --source?)"),
    (["--model", "m", "--thread=2"], "--thread=2 (did you mean --threads?)"),
    (["--model", "m", "--thr", "2"], "--thr (did you mean --threads?)"),  # abbreviations are unknown
    (["--model", "m", "--sorce", "x", "--zzzzzz"], "--sorce (did you mean --source?), --zzzzzz\n"),
])
def test_unknown_options_get_suggestions(argv, hint, capsys):
    assert hint in _error(argv, capsys)


def test_unknown_option_is_reported_before_a_missing_required_one(capsys):
    error = _error(["--modle", "m.tflite"], capsys)
    assert "--modle (did you mean --model?)" in error and "required" not in error


def test_known_arguments_parse_as_argparse_does():
    args = _parser().parse_args(["--model=m", "--threads", "2", "--offset", "-1.5", "a", "--", "--b"])
    assert (args.model, args.threads, args.offset, args.names) == ("m", 2, -1.5, ["a", "--b"])


def test_missing_required_option_and_bad_values_still_fail(capsys):
    assert "the following arguments are required: --model" in _error(["--threads", "2"], capsys)
    assert "invalid int value: 'x'" in _error(["--model", "m", "--threads", "x"], capsys)


def test_abbreviations_can_be_allowed_explicitly():
    parser = SuggestingParser(prog="tool", allow_abbrev=True)
    parser.add_argument("--threads", type=int)
    assert parser.parse_args(["--threads", "3"]).threads == 3


@pytest.mark.parametrize("check, text, value", [
    (positive_int, "1", 1), (positive_int, "12", 12), (non_negative_int, "0", 0), (non_negative_int, "7", 7),
    (probability, "0", 0.0), (probability, "1", 1.0), (probability, "0.25", 0.25),
])
def test_type_checks_accept(check, text, value):
    assert check(text) == value and type(check(text)) is type(value)


@pytest.mark.parametrize("check, text, message", [
    (positive_int, "0", "must be >= 1, got 0"), (positive_int, "-3", "must be >= 1, got -3"),
    (non_negative_int, "-1", "must be >= 0, got -1"),
    (probability, "1.5", "must be in [0, 1], got 1.5"), (probability, "-0.1", "must be in [0, 1], got -0.1"),
])
def test_type_checks_reject_out_of_range(check, text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message.replace("[", r"\[").replace("]", r"\]")):
        check(text)


@pytest.mark.parametrize("check, text", [(positive_int, "1.5"), (non_negative_int, "x"), (probability, "half")])
def test_type_checks_reject_non_numbers(check, text):
    with pytest.raises(ValueError):  # argparse reports it as "invalid <name> value"
        check(text)


def test_type_check_errors_read_well_on_the_command_line(capsys):
    parser = SuggestingParser(prog="tool")
    parser.add_argument("--runs", type=positive_int)
    with pytest.raises(SystemExit):
        parser.parse_args(["--runs", "0"])
    assert "argument --runs: must be >= 1, got 0" in capsys.readouterr().err
