//! Bedrock's error wire format: status code, `x-amzn-ErrorType` header and `{"message": …}` body.

use std::fmt;

/// The error types Bedrock sends, with their HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorCode {
    Validation,
    AccessDenied,
    ResourceNotFound,
    ModelTimeout,
    ModelError,
    Throttling,
    ModelNotReady,
    ServiceQuotaExceeded,
    InternalServer,
    ServiceUnavailable,
    InvalidSignature,
    UnrecognizedClient,
    MissingAuthenticationToken,
    UnknownOperation,
}

impl ErrorCode {
    pub(crate) fn status(self) -> u16 {
        match self {
            Self::Validation | Self::ServiceQuotaExceeded => 400,
            Self::AccessDenied
            | Self::InvalidSignature
            | Self::UnrecognizedClient
            | Self::MissingAuthenticationToken => 403,
            Self::ResourceNotFound | Self::UnknownOperation => 404,
            Self::ModelTimeout => 408,
            Self::ModelError => 424,
            Self::Throttling | Self::ModelNotReady => 429,
            Self::InternalServer => 500,
            Self::ServiceUnavailable => 503,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Validation => "ValidationException",
            Self::AccessDenied => "AccessDeniedException",
            Self::ResourceNotFound => "ResourceNotFoundException",
            Self::ModelTimeout => "ModelTimeoutException",
            Self::ModelError => "ModelErrorException",
            Self::Throttling => "ThrottlingException",
            Self::ModelNotReady => "ModelNotReadyException",
            Self::ServiceQuotaExceeded => "ServiceQuotaExceededException",
            Self::InternalServer => "InternalServerException",
            Self::ServiceUnavailable => "ServiceUnavailableException",
            Self::InvalidSignature => "InvalidSignatureException",
            Self::UnrecognizedClient => "UnrecognizedClientException",
            Self::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            Self::UnknownOperation => "UnknownOperationException",
        }
    }

    /// The namespace AWS appends to the error type header.
    fn namespace(self) -> &'static str {
        match self {
            Self::InvalidSignature
            | Self::UnrecognizedClient
            | Self::MissingAuthenticationToken
            | Self::UnknownOperation => {
                "http://internal.amazon.com/coral/com.amazon.coral.service/"
            }
            _ => "http://internal.amazon.com/coral/com.amazon.bedrock/",
        }
    }

    /// The value of the `x-amzn-ErrorType` header.
    pub(crate) fn header_value(self) -> String {
        format!("{}:{}", self.name(), self.namespace())
    }

    /// The error type a test directive names (`ThrottlingException` or `Throttling`).
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        let all = [
            Self::Validation,
            Self::AccessDenied,
            Self::ResourceNotFound,
            Self::ModelTimeout,
            Self::ModelError,
            Self::Throttling,
            Self::ModelNotReady,
            Self::ServiceQuotaExceeded,
            Self::InternalServer,
            Self::ServiceUnavailable,
        ];
        all.into_iter()
            .find(|c| c.name() == name || c.name().strip_suffix("Exception") == Some(name))
    }

    /// The message the service sends with this error when nothing more specific applies.
    pub(crate) fn default_message(self) -> &'static str {
        match self {
            Self::Validation => "The request failed validation.",
            Self::AccessDenied => "You don't have access to the model with the specified model ID.",
            Self::ResourceNotFound => "The specified resource ARN was not found.",
            Self::ModelTimeout => {
                "Model has timed out in processing the request. Try your request again."
            }
            Self::ModelError => "The model encountered an error processing the request.",
            Self::Throttling => "Too many requests, please wait before trying again.",
            Self::ModelNotReady => {
                "Model is not ready for inference. Wait and try your request again."
            }
            Self::ServiceQuotaExceeded => {
                "Your request exceeds the service quota for your account."
            }
            Self::InternalServer => {
                "The server encountered an internal error while processing the request."
            }
            Self::ServiceUnavailable => "Bedrock is unable to process your request.",
            Self::InvalidSignature => {
                "The request signature we calculated does not match the signature you provided."
            }
            Self::UnrecognizedClient => "The security token included in the request is invalid.",
            Self::MissingAuthenticationToken => "Missing Authentication Token",
            Self::UnknownOperation => "UnknownOperationException",
        }
    }
}

/// An error response as the service would send it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Validation, message)
    }

    /// The message of a native body that fails the family's JSON schema.
    pub(crate) fn malformed(detail: impl fmt::Display) -> Self {
        Self::validation(format!(
            "Malformed input request: {detail}, please reformat your input and try again."
        ))
    }

    /// Coral's constraint message, e.g. for `inferenceConfig.temperature`.
    pub(crate) fn constraint(value: impl fmt::Display, path: &str, rule: &str) -> Self {
        Self::validation(format!(
            "1 validation error detected: Value '{value}' at '{path}' failed to satisfy constraint: {rule}"
        ))
    }

    /// The JSON body sent with the error.
    pub(crate) fn body(&self) -> String {
        let mut body = serde_json::json!({ "message": self.message });
        if self.code == ErrorCode::ModelError {
            body["originalStatusCode"] = serde_json::json!(500);
        }
        body.to_string()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.name(), self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_the_documented_status() {
        let expected = [
            (ErrorCode::Validation, 400, "ValidationException"),
            (ErrorCode::AccessDenied, 403, "AccessDeniedException"),
            (
                ErrorCode::ResourceNotFound,
                404,
                "ResourceNotFoundException",
            ),
            (ErrorCode::ModelTimeout, 408, "ModelTimeoutException"),
            (ErrorCode::ModelError, 424, "ModelErrorException"),
            (ErrorCode::Throttling, 429, "ThrottlingException"),
            (ErrorCode::ModelNotReady, 429, "ModelNotReadyException"),
            (ErrorCode::InternalServer, 500, "InternalServerException"),
            (
                ErrorCode::ServiceUnavailable,
                503,
                "ServiceUnavailableException",
            ),
        ];
        for (code, status, name) in expected {
            assert_eq!((code.status(), code.name()), (status, name));
        }
        assert_eq!(
            ErrorCode::Throttling.header_value(),
            "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"
        );
    }

    #[test]
    fn messages_follow_the_service_wording() {
        assert_eq!(
            ApiError::malformed("#: required key [inputText] not found").message,
            "Malformed input request: #: required key [inputText] not found, please reformat your input and try again."
        );
        assert_eq!(
            ApiError::constraint(
                2.0,
                "inferenceConfig.temperature",
                "Member must have value less than or equal to 1"
            )
            .message,
            "1 validation error detected: Value '2' at 'inferenceConfig.temperature' failed to satisfy constraint: Member must have value less than or equal to 1"
        );
    }
}
