import tokenlean.compress as pkg


def test_all_is_pinned() -> None:
    assert pkg.__all__ == [
        "CompressLayer",
        "CompressResult",
        "Compressor",
        "HistoryCompressor",
        "HistoryResult",
        "Method",
        "Span",
        "compress",
    ]
    for name in pkg.__all__:
        assert getattr(pkg, name) is not None
