"""The per-archive key index: pages at hospital scale cost what they show.

Each archive's studies are kept as key rows (patient ID and issuer, folded name, birth
date, study UID, date and time, modalities, counts) in `index_studies`, fed by the
archive's change feed or date windows (`refresh`), built once per archive by an INDEX
job. A page is ordered and cut from the index, then its rows are verified live with one
request per archive (`resolvers`), so what a page shows still comes from the archives.
"""
