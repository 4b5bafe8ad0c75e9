"""The paper's reference numbers: transcription checks, look-up rules and sources."""

import pytest

from benchmark.methods import METHODS
from benchmark.paper import (
    APPENDIX_A,
    PAPER_OF,
    REFERENCES,
    SOURCES,
    lookup,
    references,
    same_paper,
)

DEFAULTS = {  # the appendix's best (a, m) per task, which the headline numbers use
    "cifar10-vgg": (0.6, 5), "mnist-mlp": (0.6, 5), "mnist-lenet5": (0.6, 5),
    "svhn-net": (0.6, 5), "imagenet-resnet18": (0.9, 10),
}


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (("cifar10-vgg", "blaq", 1, "lab", 0.6, 5), 91.50),
        (("mnist-mlp", "blaq", 1, "lab", 0.6, 5), 99.11),
        (("mnist-lenet5", "blaq", 1, "lab", 0.6, 5), 99.38),
        (("svhn-net", "blaq", 1, "lab", 0.6, 5), 98.13),
        (("imagenet-resnet18", "blaq", 1, "lab", 0.9, 10), 66.73),
        (("imagenet-resnet18", "blaq", 2, "lat-exact", 0.9, 10), 69.62),
        (("imagenet-resnet18", "bwn", 1, "bwn", None, None), 60.8),
        (("imagenet-resnet18", "fp", 32, None, None, None), 69.3),
        (("svhn-net", "fp", 32, None, None, None), 97.73),  # BLAQ's number before LAB's 97.72
        (("mnist-mlp", "lab", 1, "lab", None, None), 98.83),
        (("cifar10-vgg", "bwn", 1, "bwn", None, None), 88.97),
        (("mnist-mlp", "blaq", 1, "lab", 0.5, 10), 99.107),
        (("cifar10-vgg", "blaq", 1, "lab", 0.3, 10), 89.60),
        (("imagenet-resnet18", "blaq", 2, "lat-exact", 0.95, 5), 69.51),
    ],
)
def test_lookup_returns_the_published_number(key, expected):
    ref = lookup(*key)
    assert ref is not None and ref.value == pytest.approx(expected, abs=0)
    assert ref.source in SOURCES and ref.setting


@pytest.mark.parametrize(
    "key",
    [
        ("cifar10-vgg", "blaq", 2, "lat-exact", 0.6, 5),   # no 2-bit BLAQ number for CIFAR-10
        ("cifar10-vgg", "blaq", 1, "lab", 0.65, 5),        # a is not on the appendix grid
        ("cifar10-vgg", "blaq", 1, "lab", 0.6, 7),         # nor is m
        ("mnist-lenet5", "fp", 32, None, None, None),      # the spec gives no LeNet5 baseline
        ("cifar10-vgg", "laq", 2, "lat-exact", None, None),
        ("svhn-net", "twn", 2, "twn", None, None),
        ("mnist-mlp", "blaq", 1, "lab", None, None),       # BLAQ numbers need a and m
    ],
)
def test_no_number_where_the_sources_give_none(key):
    assert lookup(*key) is None


def test_headline_is_the_appendix_best_at_the_default_a_and_m():
    """A property of the published numbers that a transcription slip would likely break."""
    for task, (a, m) in DEFAULTS.items():
        for bits in (1, 2):
            rows = [r for r in REFERENCES
                    if (r.task, r.bits, r.source, r.m) == (task, bits, "BLAQ-app", m)]
            if not rows:
                continue
            best = max(rows, key=lambda r: r.value)
            assert best.a == a, (task, bits)
            headline = [r for r in references(task, "blaq", bits, a=a, m=m) if r.source == "BLAQ"]
            assert len(headline) == 1 and headline[0].value == best.value


def test_appendix_grid_is_complete():
    app = [r for r in REFERENCES if r.source == "BLAQ-app"]
    assert len(app) == 6 * 2 * len(APPENDIX_A)
    cells = {(r.task, r.bits, r.m, r.a) for r in app}
    assert len(cells) == len(app)
    assert APPENDIX_A == (0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)


def test_keys_are_unique_within_a_source_and_values_are_accuracies():
    seen = set()
    for r in REFERENCES:
        key = (r.source, r.task, r.method, r.bits, r.scheme, r.a, r.m)
        assert key not in seen, key
        seen.add(key)
        assert 0 < r.value <= 100
        assert r.decimals == len(r.text.split(".")[1])


def test_scheme_none_matches_any_scheme_but_a_named_scheme_must_agree():
    assert lookup("imagenet-resnet18", "blaq", 2, "lat-approx", 0.9, 10).value == 69.62
    assert lookup("imagenet-resnet18", "blaq", 2, None, 0.9, 10).value == 69.62


def test_lab_numbers_keep_their_conversion_note():
    lab = [r for r in REFERENCES if r.source == "LAB"]
    assert {r.task for r in lab} == {"mnist-mlp", "cifar10-vgg", "svhn-net"}
    assert "converted" in SOURCES["LAB"]


def test_decimals_follow_the_source_text():
    assert lookup("mnist-mlp", "blaq", 1, a=0.95, m=5).decimals == 3
    assert lookup("imagenet-resnet18", "bwn", 1).decimals == 1
    assert lookup("cifar10-vgg", "blaq", 1, a=0.6, m=5).text == "91.50"


def test_every_number_belongs_to_a_registered_method():
    """A number for a method no table can run (e.g. BinaryConnect) could never be shown."""
    unknown = sorted({r.method for r in REFERENCES} - set(METHODS))
    assert unknown == []


def test_sources_map_to_papers():
    assert set(PAPER_OF) == set(SOURCES)
    assert same_paper("BLAQ", "BLAQ-app")  # main text and appendix: one paper
    assert not same_paper("BLAQ", "LAB") and not same_paper("BLAQ", "XNOR")
