"""tokenlean.bench: the benchmarks behind docs/benchmarks/ and the training code of the
shipped artefacts, kept out of the packages an application imports.

Each module is one ``tokenlean bench <name>`` command (registered under the
``tokenlean.bench`` entry-point group, so the ``tokenlean`` CLI lists it) and
prints one JSON object:

==================  ===========================  =====================================
command             module                       measures
==================  ===========================  =====================================
``cache``           :mod:`.cache`                semantic-hit precision / recall, lookup latency
``compress``        :mod:`.compress`             answer retention at a compression ratio
``budget``          :mod:`.budget`               predicted ``max_tokens`` against real answers
``templates``       :mod:`.templates`            tokens saved by the rewrite passes
``templates-cache`` :mod:`.templates_cache`      prefix-cache eligibility in a multi-turn replay
``backend``         :mod:`.backend`              a pruned model against the dense one
``prune``           :mod:`.backend`              prune, reload, evaluate
``attention``       :mod:`.attention`            prefill latency of attention implementations
``server``          :mod:`.server`               local-server throughput and prefix-cache speedup
``accounting``      :mod:`.accounting`           cost of counting, pricing and each exporter
``overhead``        :mod:`.overhead`             what ``lean()`` adds to a LangChain call
==================  ===========================  =====================================

:mod:`.budget_train` trains and evaluates the length predictor
(``scripts/train_length_predictor.py``; needs ``tokenlean[budget-train]``).
"""
