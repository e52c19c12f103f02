"""The pure core of jobsched: models, retry policy and errors. Imports no I/O."""
