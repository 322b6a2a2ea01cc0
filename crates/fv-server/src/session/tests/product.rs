//! `/ws` transcripts: every flow of dreamverse-facts.
