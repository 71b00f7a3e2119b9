"""Parse and validate each distinct document once, and large ones off the event loop.

The cache key is the document's significant tokens (comments, commas and insignificant
whitespace dropped), hashed: a comment or a reflowed document does not make a known
document new again (issue 12, finding 3). A miss is validated in one worker thread, so
a flood of new documents delays other requests (and `/health`) by the interpreter's
switch interval, not by their validation time (misses wait their turn for the thread;
clients that send the same documents, as the dashboard does, hit the cache). Documents whose
text is short are lexed and parsed on the loop (faster than the hop to a thread); every
validation on a miss is done in the thread (a short document can be slow to validate).

Two documents with one key share one parsed tree: error locations point into the text
of the first one seen (same tokens, so the same line only when laid out alike). A
document refused before execution (invalid, too complex) is not kept: a stream of new
refused documents would otherwise fill the cache with their trees.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from graphql import DocumentNode, GraphQLError, GraphQLSyntaxError, Source, parse
from graphql.language import Lexer, TokenKind
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

from gateway.core.timing import charge

T = TypeVar("T")
INLINE_CHARS = 4096  # documents longer than this are lexed for their key in a thread
CACHED_CHARS = 64 * 1024  # longer documents are not kept (they are not a client's usual)
WORKERS = 1  # a thread for parsing and validation: the loop keeps half of the GIL
_pool: ThreadPoolExecutor | None = None


class _Lru(OrderedDict[str, T]):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def get_(self, key: str) -> T | None:
        value = self.get(key)
        if value is not None:
            self.move_to_end(key)
        return value

    def put(self, key: str, value: T) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


def document_key(query: str, max_tokens: int) -> str:
    """A digest of `query`'s significant tokens; the parser's syntax error (the token limit
    counting comments too, as `parse(max_tokens=)` does) when it has no such key."""
    source = Source(query)
    lexer = Lexer(source)
    digest = hashlib.sha256()
    counted = 0
    token = lexer.token
    while True:
        previous, token = token, lexer.advance()
        skipped = previous.next
        while skipped is not None and skipped is not token:  # comments
            counted += 1
            skipped = skipped.next
        if token.kind is TokenKind.EOF:
            break
        counted += 1
        if counted > max_tokens:
            raise GraphQLSyntaxError(
                source,
                token.start,
                f"Document contains more than {max_tokens} tokens. Parsing aborted.",
            )
        digest.update(query[token.start : token.end].encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")
    return digest.hexdigest()


async def off_loop(work: Callable[[], T]) -> T:
    """`work()` in the documents' thread pool, its time charged to the current meter.

    A `work()` that raises is not charged: the syntax errors of the parser's token limit
    come fast."""
    global _pool  # threads start on first use, in the serving process
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="graphql-docs")

    def timed() -> tuple[T, float]:
        start = time.perf_counter()
        return work(), time.perf_counter() - start

    result, seconds = await asyncio.get_running_loop().run_in_executor(_pool, timed)
    charge(seconds)  # the thread's time is the request's too
    return result


class Documents(SchemaExtension):
    """Parse and validation cache by significant tokens; misses worked out in a thread."""

    _keys: _Lru[str] = _Lru(256)  # exact text to key: a known text is not lexed again
    _parsed: _Lru[DocumentNode] = _Lru(256)
    _validated: _Lru[list[GraphQLError]] = _Lru(256)

    def __init__(self, *, max_tokens: int, size: int = 256) -> None:
        super().__init__()
        self.max_tokens = max_tokens
        self._keys.size = self._parsed.size = self._validated.size = size
        self.key: str | None = None

    async def on_parse(self) -> AsyncIterator[None]:
        """Set the document from the cache, or parse it (in a thread when long)."""
        ctx = self.execution_context
        query = ctx.query
        if ctx.graphql_document is None and query:
            self.key = self._keys.get_(query)
            if self.key is None:
                if len(query) <= INLINE_CHARS:
                    self.key = document_key(query, self.max_tokens)
                else:
                    self.key = await off_loop(lambda: document_key(query, self.max_tokens))
                if len(query) <= CACHED_CHARS:
                    self._keys.put(query, self.key)
            document = self._parsed.get_(self.key)
            if document is None and len(query) <= INLINE_CHARS:
                document = parse(query, max_tokens=self.max_tokens)
            elif document is None:
                document = await off_loop(lambda: parse(query, max_tokens=self.max_tokens))
            if document is not self._parsed.get(self.key) and len(query) <= CACHED_CHARS:
                self._parsed.put(self.key, document)
            ctx.graphql_document = document
        yield

    async def on_validate(self) -> AsyncIterator[None]:
        """Set the validation errors from the cache, or validate in a thread."""
        ctx = self.execution_context
        document = ctx.graphql_document
        if ctx.pre_execution_errors is None and document is not None:
            key = self.key
            errors = self._validated.get_(key) if key is not None else None
            if errors is None:
                schema, rules = ctx.schema._schema, tuple(ctx.validation_rules)
                errors = await off_loop(lambda: validate_document(schema, document, rules))
                if key is not None and key in self._parsed:
                    self._validated.put(key, errors)
            ctx.pre_execution_errors = list(errors)
        yield
        if ctx.pre_execution_errors and self.key is not None:  # refused: not worth a place
            self._parsed.pop(self.key, None)
            self._validated.pop(self.key, None)
            if ctx.query:
                self._keys.pop(ctx.query, None)


def cache_clear() -> None:
    """Forget every document (tests)."""
    Documents._keys.clear()
    Documents._parsed.clear()
    Documents._validated.clear()
