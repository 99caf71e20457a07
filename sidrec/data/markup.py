"""HTML markup in source text: which angle-bracketed text is a tag, and removing tags.

Only real HTML tags go (element names of the HTML standard, plus obsolete ones seen in
scraped product pages, and comments): text such as ``<NA>`` or ``<3 mm`` is data and
stays. A rule that dropped every ``<...>`` would turn a title ``<NA>`` into no title.
"""
from __future__ import annotations

import re

HTML_ELEMENTS = frozenset("""
a abbr acronym address applet area article aside audio b base basefont bdi bdo big blink
blockquote body br button canvas caption center cite code col colgroup data datalist dd
del details dfn dialog dir div dl dt em embed fieldset figcaption figure font footer form
frame frameset h1 h2 h3 h4 h5 h6 head header hgroup hr html i iframe img input ins kbd
label legend li link main map mark marquee math menu meta meter nav nobr noframes
noscript object ol optgroup option output p param picture pre progress q rp rt ruby s
samp script search section select small source span strike strong style sub summary sup
svg table tbody td template textarea tfoot th thead time title tr track tt u ul var video
wbr
""".split())

# An opening, closing or self-closing tag of a known element (attributes allowed), or a
# comment. The name must end at a space, '/' or '>' so that "<bright>" is not "<b>".
TAG = re.compile(
    r"<!--.*?-->|</?(?:" + "|".join(sorted(HTML_ELEMENTS, key=len, reverse=True))
    + r")(?=[\s/>])[^<>]*>",
    re.IGNORECASE | re.DOTALL,
)


def strip_tags(text: str, replacement: str = " ") -> str:
    """`text` with every HTML tag replaced by `replacement`; other text is kept."""
    return TAG.sub(replacement, text)


def has_tag(text: str) -> bool:
    return TAG.search(text) is not None
