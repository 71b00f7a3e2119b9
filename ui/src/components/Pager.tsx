import { t } from "../i18n";

/**
 * Cursor pagination: "first page" when not on it, "next page" while the server says there
 * is one. `page` is 1-based, for display only (cursors are opaque).
 */
export function Pager(props: {
  page: number;
  hasNextPage: boolean;
  endCursor: string | null | undefined;
  onNext: (cursor: string) => void;
  onFirst: () => void;
}) {
  const { page, hasNextPage, endCursor, onNext, onFirst } = props;
  return (
    <nav className="pager" aria-label="pagination">
      <button type="button" onClick={onFirst} disabled={page <= 1}>
        {t.pager.first}
      </button>
      <span className="pager-page">{t.pager.page(page)}</span>
      <button
        type="button"
        onClick={() => endCursor && onNext(endCursor)}
        disabled={!hasNextPage || !endCursor}
      >
        {t.pager.next}
      </button>
    </nav>
  );
}
