from modelwatch.integrations.celery import *  # noqa: F403 - the same module (see modelwatch.integrations)
from modelwatch.integrations.celery import __all__ as __all__
