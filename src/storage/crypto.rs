//! Parse Server's file encryption format (being implemented: see the storage issue).
