"""The study driver: a directory of recipes planned as one graph of stages, trained, evaluated, reported."""
