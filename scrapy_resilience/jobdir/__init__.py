"""The job directory on disk: checkpoints (manifest + sidecars), the frontier journal, the lock, loading a job back."""
