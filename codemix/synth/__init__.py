"""Synthetic code: a generator model solves problems, the sandbox runs each solution against the
problem's tests, and the verified solutions become a corpus source of kind `synthetic`.

The library API, in codemix.synth.pipeline (the study driver and `codemix data synth` both call it):
    write_synthetic(generator, out, options)                     -> summary
    add_synthetic_source(corpus_path, generator, out, options)   -> summary (the corpus gains the source)
Nothing is imported here, so `codemix data --help` does not pay for the data build's imports."""
