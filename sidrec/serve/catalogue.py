"""The catalogue as a person names it: item ids or exact titles in, ids out; title
search for the page's autocomplete. Nothing here touches the model."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..lm.prompts import clean_title


class UnknownItem(ValueError):
    """An entry of a history that names no catalogue item (or more than one)."""

    def __init__(self, index: int, message: str):
        self.index = index
        super().__init__(message)


@dataclass(frozen=True)
class Item:
    id: int
    title: str
    sid: list[str]


class Catalogue:
    """Items 0..n-1 with their titles and SID tokens (`sids[i]`: ["<a_1>", "<b_7>", ...])."""

    def __init__(self, titles: Sequence[str], sids: Sequence[Sequence[str]]):
        if len(titles) != len(sids):
            raise ValueError(f"{len(titles)} titles for {len(sids)} SIDs")
        self.titles = [clean_title(t) for t in titles]
        self.sids = [list(s) for s in sids]
        self._lower = [t.casefold() for t in self.titles]
        self._by_title: dict[str, list[int]] = {}
        for i, title in enumerate(self.titles):
            self._by_title.setdefault(title, []).append(i)

    def __len__(self) -> int:
        return len(self.titles)

    def item(self, item_id: int) -> Item:
        return Item(int(item_id), self.titles[item_id], self.sids[item_id])

    def resolve(self, history: Sequence[int | str]) -> list[int]:
        """Item ids of a history given as ids or exact titles (whitespace as in the
        catalogue's cleaned titles). UnknownItem naming the entry's position for an id
        out of range, a title no item has, or a title that several items share."""
        ids = []
        for index, entry in enumerate(history):
            if isinstance(entry, int):
                if not 0 <= entry < len(self):
                    raise UnknownItem(index, f"unknown item id {entry} (ids are 0..{len(self) - 1})")
                ids.append(entry)
                continue
            matches = self._by_title.get(clean_title(entry), [])
            if not matches:
                raise UnknownItem(index, f"no item has the title {entry[:200]!r} "
                                         "(GET /items?q=... searches titles)")
            if len(matches) > 1:
                raise UnknownItem(index, f"the title {entry[:200]!r} is shared by items {matches[:10]}; "
                                         "give the item id instead")
            ids.append(matches[0])
        return ids

    def search(self, query: str, limit: int) -> list[Item]:
        """Items whose title contains `query` (case-insensitive), titles starting with it
        first, then those where it starts a word, then the rest; by id within each."""
        needle = " ".join(query.split()).casefold()
        if not needle:
            return []
        ranked = []
        for i, title in enumerate(self._lower):
            at = title.find(needle)
            if at < 0:
                continue
            rank = 0 if at == 0 else 1 if not title[at - 1].isalnum() else 2
            ranked.append((rank, i))
        return [self.item(i) for _, i in sorted(ranked)[:limit]]
