//! Reading `_SCHEMA` (being implemented).
