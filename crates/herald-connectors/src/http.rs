//! HTTP plumbing shared by all connectors: the status → outcome rules and transport
//! error classification. (To be written.)
