//! The registry of emulated resource types: one variant and one module per type, mirroring
//! keyflip's own `providers/`. A module owns the resource's model, its Resource Manager
//! operations and its data plane.

pub mod cognitive_services;

use axum::http::Method;
use axum::response::Response;

use crate::arm::{ArmCall, ResourcePath};
use crate::error::AzureError;
use crate::world::Ctx;

/// A resource type the emulated Resource Manager serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArmResourceType {
    /// `Microsoft.CognitiveServices/accounts`.
    CognitiveServicesAccount,
}

impl ArmResourceType {
    /// The type at `{namespace}/{type}` (case-insensitive), if emulated.
    pub fn resolve(namespace: &str, resource_type: &str) -> Option<Self> {
        match (
            namespace.to_ascii_lowercase().as_str(),
            resource_type.to_ascii_lowercase().as_str(),
        ) {
            ("microsoft.cognitiveservices", "accounts") => Some(Self::CognitiveServicesAccount),
            _ => None,
        }
    }

    /// The operation id for a method and action on this type.
    pub fn operation(self, method: &Method, action: Option<&str>) -> Option<&'static str> {
        match self {
            Self::CognitiveServicesAccount => cognitive_services::arm_operation(method, action),
        }
    }

    pub fn api_versions(self) -> &'static [&'static str] {
        match self {
            Self::CognitiveServicesAccount => cognitive_services::ARM_API_VERSIONS,
        }
    }

    /// Checks that the caller may run the operation on the resource (RBAC).
    pub fn authorize(
        self,
        ctx: &Ctx,
        resource: &ResourcePath,
        caller: &str,
        operation: &str,
    ) -> Result<(), AzureError> {
        match self {
            Self::CognitiveServicesAccount => cognitive_services::authorize(ctx, resource, caller, operation),
        }
    }

    /// Runs the operation.
    pub fn execute(
        self,
        ctx: &Ctx,
        resource: &ResourcePath,
        operation: &str,
        call: &ArmCall,
        body: &[u8],
    ) -> Response {
        match self {
            Self::CognitiveServicesAccount => {
                cognitive_services::execute(ctx, resource, operation, call, body)
            }
        }
    }

    /// What the `Location` URL of one of its long-running operations answers.
    pub fn operation_result(
        self,
        world: &crate::world::World,
        operation: &crate::operations::Operation,
    ) -> Response {
        match self {
            Self::CognitiveServicesAccount => cognitive_services::operation_result(world, operation),
        }
    }
}
