"""What serving needs only once a call arrives, loaded then: start-up time is measured.

``gitpod-sim serve`` registers every handler before it says ``listening on``, but a handler's
message classes (the betterproto2 runtime and the generated code), health and reflection's
descriptor pool (Google's protobuf) are needed only by the first call that uses them. Two tools
keep them out of start-up without changing what any call sees:

* :func:`deferred_module`: a stand-in for a module, imported on its first attribute access, then
  holding the module's own names (later reads cost what a module's do);
* :class:`LazyHandler`: grpclib's ``Handler`` whose ``request_type`` and ``reply_type`` are
  :class:`Deferred` and resolved where read (grpclib reads them per call, when the stream opens).

``tests/test_startup.py`` checks in a fresh interpreter that a server listens with none of them
loaded, and that the first call loads them.
"""

from __future__ import annotations

import importlib
import types
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from grpclib.const import Cardinality, Handler

_T = TypeVar("_T")


class _DeferredModule(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        # only for names not in the stand-in's own dict: that is, the first read
        module = importlib.import_module(self.__name__)
        self.__dict__.update(module.__dict__)
        # a plain module from now on: Python's fast path for module attributes applies again
        # (a subclass with __getattr__ costs 90 ns a read instead of 7)
        self.__class__ = types.ModuleType  # type: ignore[assignment]
        return getattr(module, name)


def deferred_module(name: str) -> Any:
    """A stand-in for module ``name``, which is imported at the first attribute read and then
    holds the module's names as they are at that moment (what the module defines, and the
    submodules it imported). Type it with the real import under ``if TYPE_CHECKING``.
    ``sys.modules`` is not touched: any other importer gets the real module, and both see the
    same classes."""
    return _DeferredModule(name)


_UNSET: Any = object()


class Deferred(Generic[_T]):
    """A value made by ``make`` at the first :meth:`get`, then kept."""

    __slots__ = ("_make", "_value")

    def __init__(self, make: Callable[[], _T]) -> None:
        self._make = make
        self._value: _T = _UNSET

    def get(self) -> _T:
        value = self._value
        if value is _UNSET:
            value = self._value = self._make()
        return value


def message_type(module: Any, name: str) -> Deferred[Any]:
    """The class ``name`` of a (deferred) module, read on first use."""
    return Deferred(lambda: getattr(module, name))


class LazyHandler(Handler):
    """A grpclib ``Handler`` whose message types load when first read (see the module doc)."""

    __slots__ = ()

    def __new__(
        cls,
        func: Callable[..., Any],
        cardinality: Cardinality,
        request_type: Deferred[Any],
        reply_type: Deferred[Any],
    ) -> LazyHandler:
        # tuple.__new__ directly: the namedtuple's own __new__ is a Python function (one mapping
        # entry per method of every world's services is made)
        return tuple.__new__(cls, (func, cardinality, request_type, reply_type))

    # read by grpclib on every call: the made value without a call once it is there

    @property
    def request_type(self) -> Any:
        deferred: Deferred[Any] = self[2]
        value = deferred._value
        return deferred.get() if value is _UNSET else value

    @property
    def reply_type(self) -> Any:
        deferred: Deferred[Any] = self[3]
        value = deferred._value
        return deferred.get() if value is _UNSET else value
