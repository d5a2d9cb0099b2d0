"""The run store: where a stage lives on disk, what its lineage says, and which stages are complete.

    <runs>/<recipe>/<stage>-<identity>/
        checkpoints/last.ckpt   Lightning checkpoint (model, optimizer, LR step, loader position,
                                tokens per source), rewritten atomically at each interval and at the end
        checkpoints/previous.ckpt  the interval checkpoint before last.ckpt, while the stage runs: where
                                a re-run resumes when last.ckpt is unreadable (set aside as
                                last.ckpt.unusable-<time>)
        snapshots/tokens-N/     weights-only snapshots every snapshot_interval_tokens (pretrained
                                folders, like final/), for codemix eval and the notebooks
        final/                  save_pretrained: model.safetensors, model_config.json, tokenizer.json
        logs/csv/version_N/     one CSV (and TensorBoard) version per start of the stage
        metrics.csv             all versions merged: the rows of an interrupted start that a resume
                                retrained are replaced by the resumed ones
        attempts.json           when each start began and from which step
        eval/results.json       `codemix eval`'s scores of final/
        eval/snapshots/tokens-N.json  its scores of snapshots/tokens-N/ (`codemix eval STAGE --checkpoints all`)
        lineage.json            written last: its "completed": true makes the stage reusable
    <runs>/_stages/<identity>   symlink to the stage directory that completed with that identity, so
                                another recipe sharing the stage finds it without retraining it
"""
