"""The station console: a data steward's web pages over ``station.service`` (the same
actions, checks and audit entries as ``pht-station approve/reject/release``)."""
