"""Classical baselines ranked on exactly the project's splits.

`popularity`: most-frequent training targets, the same list for every row.
`sasrec`: a compact self-attentive sequential recommender (Kang & McAuley, 2018),
trained and evaluated the way the RecBole peers in ../shared/data/README.md are.

Both know nothing of language models or semantic IDs; they read samples tables
(`sidrec.data.tables`) and return ranked item ids `[rows, k]`, best first.
"""
