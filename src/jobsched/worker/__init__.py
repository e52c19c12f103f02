"""The worker: takes runs from a queue, executes their handlers, records every attempt.

Kept free of imports so that ``jobsched.handler`` (the registry's decorator) can be
used by a handler module without pulling in the storage and HTTP stacks; import
``jobsched.worker.service`` for the ``Worker`` itself.
"""
