# The README's two commands: `make quickstart` (main job on the embedded default data) and `make test`.
.PHONY: setup quickstart test bench

setup:
	@bash scripts/setup.sh

quickstart: setup
	.venv/bin/codemix reproduce recipes/tiny

test: setup
	.venv/bin/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder

bench: setup
	.venv/bin/python benchmarks/data_throughput.py
	.venv/bin/python benchmarks/train_throughput.py
	.venv/bin/python benchmarks/eval_throughput.py
