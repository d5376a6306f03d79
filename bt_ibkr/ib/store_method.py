"""``store_or_default``: a method of IBStore callable on an instance or on the class, where
it runs on the default store (``IBStore.getdata(...)`` as backtrader's stores allow)."""

from __future__ import annotations

import functools

__all__ = ["store_or_default"]


class store_or_default:  # noqa: N801 - used as a decorator, named like one
    """A method callable on the class (it then uses ``cls.default()``) or on an instance."""

    def __init__(self, func):
        self.func = func
        functools.update_wrapper(self, func)

    def __get__(self, obj, cls):
        if obj is not None:
            return functools.partial(self.func, obj)

        @functools.wraps(self.func)
        def bound(*args, **kwargs):
            return self.func(cls.default(), *args, **kwargs)

        return bound
