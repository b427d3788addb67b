from .celery_on_use import bind_on_first_import

bind_on_first_import()  # Celery's app is created by the process's first ``import celery``, not by every process
