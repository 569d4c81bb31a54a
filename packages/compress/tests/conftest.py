from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

# A SQuAD-like context: five short paragraphs about different things.
CONTEXT = """\
The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. It is named after the engineer Gustave Eiffel, whose company designed and built the tower. Locally nicknamed "La dame de fer", it was constructed from 1887 to 1889 as the centerpiece of the 1889 World's Fair.

The Amazon River in South America is the largest river by discharge volume of water in the world. The headwaters of the Apurimac River on Nevado Mismi had been considered for nearly a century as the Amazon basin's most distant source. The river system originates in the Andes mountains of Peru.

Photosynthesis is a process used by plants and other organisms to convert light energy into chemical energy. Most plants, algae, and cyanobacteria perform photosynthesis; such organisms are called photoautotrophs. Photosynthesis is largely responsible for producing and maintaining the oxygen content of the atmosphere.

The Great Wall of China is a series of fortifications that were built across the historical northern borders of ancient Chinese states. Several walls were built from as early as the 7th century BC. The best-known sections were built by the Ming dynasty between 1368 and 1644.

Johann Sebastian Bach was a German composer and musician of the late Baroque period. He is known for orchestral music such as the Brandenburg Concertos and for vocal music such as the St Matthew Passion. Bach was born in Eisenach in 1685 and died in Leipzig in 1750."""  # noqa: E501 - prose paragraphs, one per line


@pytest.fixture
def context() -> str:
    return CONTEXT


@pytest.fixture
def squad_path(shared_data: Callable[[str], Path]) -> Path:
    return shared_data("qa_squad_dev.jsonl")
