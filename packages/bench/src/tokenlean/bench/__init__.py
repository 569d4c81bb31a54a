"""tokenlean.bench: the benchmarks behind docs/benchmarks/ and the training code of the
shipped artefacts, kept out of the packages an application imports.

Each module is a ``tokenlean bench`` command (registered under the
``tokenlean.bench`` entry-point group, which the ``tokenlean`` CLI lists) that
prints one JSON object:

* ``cache`` (:mod:`tokenlean.bench.cache`): semantic-hit precision and recall,
  lookup latency;
* ``compress`` (:mod:`tokenlean.bench.compress`): answer retention at a ratio;
* ``budget`` (:mod:`tokenlean.bench.budget`): predicted ``max_tokens`` against
  real answers;
* ``templates`` / ``templates-cache`` (:mod:`tokenlean.bench.templates`,
  :mod:`tokenlean.bench.templates_cache`): tokens saved by the rewrite passes;
  prefix-cache eligibility in a multi-turn replay;
* ``backend`` / ``prune`` (:mod:`tokenlean.bench.backend`): a pruned model
  against the dense one;
* ``attention`` (:mod:`tokenlean.bench.attention`): prefill latency of the
  attention implementations;
* ``server`` (:mod:`tokenlean.bench.server`): local-server throughput and the
  prefix-cache speedup;
* ``accounting`` (:mod:`tokenlean.bench.accounting`): the cost of counting,
  pricing and each exporter;
* ``overhead`` (:mod:`tokenlean.bench.overhead`): what ``lean()`` adds to a
  LangChain call;
* ``reliability`` (:mod:`tokenlean.bench.reliability`): budget overspend, server
  5xx and ``/health`` latency, cross-tenant hits, lost ledger rows;
* ``traffic`` (:mod:`tokenlean.bench.traffic`, generator
  :mod:`tokenlean.bench.traffic_gen`): what ``lean()``'s max-savings pipeline
  saves on seeded logs of five app shapes (rag, support, multi-turn, agent, chat).

:mod:`tokenlean.bench.budget_train` trains and evaluates the length predictor
(``scripts/train_length_predictor.py``; needs ``tokenlean[budget-train]``).
"""
