"""Federation: fan a call out to every source, merge and compare what they hold."""
