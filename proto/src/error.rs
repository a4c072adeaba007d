//! S3 error codes: the one place an error becomes a wire code and status.

use std::fmt;

/// An S3 error code as it appears in `<Code>` of an error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3ErrorCode {
    AccessDenied,
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    BadDigest,
    BucketAlreadyExists,
    BucketAlreadyOwnedByYou,
    BucketNotEmpty,
    EntityTooLarge,
    EntityTooSmall,
    ExpiredToken,
    IncompleteBody,
    InternalError,
    InvalidAccessKeyId,
    InvalidArgument,
    InvalidBucketName,
    InvalidBucketState,
    InvalidDigest,
    InvalidLocationConstraint,
    InvalidPart,
    InvalidPartOrder,
    InvalidRange,
    InvalidRequest,
    InvalidRetentionPeriod,
    InvalidStorageClass,
    InvalidObjectState,
    InvalidTag,
    InvalidURI,
    KeyTooLongError,
    MalformedXML,
    MetadataTooLarge,
    MethodNotAllowed,
    MissingContentLength,
    MissingRequestBodyError,
    MissingSecurityHeader,
    NoSuchBucket,
    NoSuchKey,
    NoSuchObjectLockConfiguration,
    NoSuchTagSet,
    NoSuchUpload,
    NoSuchVersion,
    NotImplemented,
    NotModified,
    ObjectLockConfigurationNotFoundError,
    OperationAborted,
    PreconditionFailed,
    RequestTimeTooSkewed,
    RequestTimeout,
    SignatureDoesNotMatch,
    SlowDown,
    TooManyBuckets,
    XAmzContentSHA256Mismatch,
    // Access control (ACLs, bucket policies, session tokens).
    AccessControlListNotSupported,
    InvalidBucketAclWithObjectOwnership,
    InvalidToken,
    MalformedACLError,
    MalformedPolicy,
    NoSuchBucketPolicy,
    NoSuchPublicAccessBlockConfiguration,
    OwnershipControlsNotFoundError,
    UnresolvableGrantByEmailAddress,
    UnexpectedContent,
    /// 400 with the generic code for unparseable HTTP.
    BadRequest,
    /// 431-ish conditions surface as 400 in S3; kept distinct for logs.
    RequestHeaderSectionTooLarge,
    ServiceUnavailable,
    /// Not AWS's (it has no such condition): the node's disks are above
    /// their high-water mark. 507, not retried by SDKs.
    StorageFull,
    InvalidPolicyDocument,
    NoSuchCORSConfiguration,
    NoSuchLifecycleConfiguration,
    ReplicationConfigurationNotFoundError,
    ServerSideEncryptionConfigurationNotFoundError,
    CORSForbidden,
    InvalidTargetBucketForLogging,
    MalformedPOSTRequest,
    IncorrectNumberOfFilesInPostRequest,
    MaxPostPreDataLengthExceeded,
}

impl S3ErrorCode {
    pub fn as_str(self) -> &'static str {
        use S3ErrorCode::*;
        match self {
            AccessDenied => "AccessDenied",
            AuthorizationHeaderMalformed => "AuthorizationHeaderMalformed",
            AuthorizationQueryParametersError => "AuthorizationQueryParametersError",
            BadDigest => "BadDigest",
            BucketAlreadyExists => "BucketAlreadyExists",
            BucketAlreadyOwnedByYou => "BucketAlreadyOwnedByYou",
            BucketNotEmpty => "BucketNotEmpty",
            EntityTooLarge => "EntityTooLarge",
            EntityTooSmall => "EntityTooSmall",
            ExpiredToken => "ExpiredToken",
            IncompleteBody => "IncompleteBody",
            InternalError => "InternalError",
            InvalidAccessKeyId => "InvalidAccessKeyId",
            InvalidArgument => "InvalidArgument",
            InvalidBucketName => "InvalidBucketName",
            InvalidBucketState => "InvalidBucketState",
            InvalidDigest => "InvalidDigest",
            InvalidLocationConstraint => "InvalidLocationConstraint",
            InvalidPart => "InvalidPart",
            InvalidPartOrder => "InvalidPartOrder",
            InvalidRange => "InvalidRange",
            InvalidRequest => "InvalidRequest",
            InvalidRetentionPeriod => "InvalidRetentionPeriod",
            InvalidStorageClass => "InvalidStorageClass",
            InvalidObjectState => "InvalidObjectState",
            InvalidTag => "InvalidTag",
            InvalidURI => "InvalidURI",
            KeyTooLongError => "KeyTooLongError",
            MalformedXML => "MalformedXML",
            MetadataTooLarge => "MetadataTooLarge",
            MethodNotAllowed => "MethodNotAllowed",
            MissingContentLength => "MissingContentLength",
            MissingRequestBodyError => "MissingRequestBodyError",
            MissingSecurityHeader => "MissingSecurityHeader",
            NoSuchBucket => "NoSuchBucket",
            NoSuchKey => "NoSuchKey",
            NoSuchObjectLockConfiguration => "NoSuchObjectLockConfiguration",
            NoSuchTagSet => "NoSuchTagSet",
            NoSuchUpload => "NoSuchUpload",
            NoSuchVersion => "NoSuchVersion",
            NotImplemented => "NotImplemented",
            NotModified => "NotModified",
            ObjectLockConfigurationNotFoundError => "ObjectLockConfigurationNotFoundError",
            OperationAborted => "OperationAborted",
            PreconditionFailed => "PreconditionFailed",
            RequestTimeTooSkewed => "RequestTimeTooSkewed",
            RequestTimeout => "RequestTimeout",
            SignatureDoesNotMatch => "SignatureDoesNotMatch",
            SlowDown => "SlowDown",
            TooManyBuckets => "TooManyBuckets",
            XAmzContentSHA256Mismatch => "XAmzContentSHA256Mismatch",
            AccessControlListNotSupported => "AccessControlListNotSupported",
            InvalidBucketAclWithObjectOwnership => "InvalidBucketAclWithObjectOwnership",
            InvalidToken => "InvalidToken",
            MalformedACLError => "MalformedACLError",
            MalformedPolicy => "MalformedPolicy",
            NoSuchBucketPolicy => "NoSuchBucketPolicy",
            NoSuchPublicAccessBlockConfiguration => "NoSuchPublicAccessBlockConfiguration",
            OwnershipControlsNotFoundError => "OwnershipControlsNotFoundError",
            UnresolvableGrantByEmailAddress => "UnresolvableGrantByEmailAddress",
            UnexpectedContent => "UnexpectedContent",
            BadRequest => "BadRequest",
            RequestHeaderSectionTooLarge => "RequestHeaderSectionTooLarge",
            ServiceUnavailable => "ServiceUnavailable",
            StorageFull => "XTesseraStorageFull",
            InvalidPolicyDocument => "InvalidPolicyDocument",
            NoSuchCORSConfiguration => "NoSuchCORSConfiguration",
            NoSuchLifecycleConfiguration => "NoSuchLifecycleConfiguration",
            ReplicationConfigurationNotFoundError => "ReplicationConfigurationNotFoundError",
            ServerSideEncryptionConfigurationNotFoundError => "ServerSideEncryptionConfigurationNotFoundError",
            CORSForbidden => "AccessForbidden",
            InvalidTargetBucketForLogging => "InvalidTargetBucketForLogging",
            MalformedPOSTRequest => "MalformedPOSTRequest",
            IncorrectNumberOfFilesInPostRequest => "IncorrectNumberOfFilesInPostRequest",
            MaxPostPreDataLengthExceeded => "MaxPostPreDataLengthExceeded",
        }
    }

    pub fn status(self) -> u16 {
        use S3ErrorCode::*;
        match self {
            AccessDenied | InvalidAccessKeyId | RequestTimeTooSkewed | SignatureDoesNotMatch | CORSForbidden => 403,
            NoSuchCORSConfiguration | NoSuchLifecycleConfiguration | ReplicationConfigurationNotFoundError | ServerSideEncryptionConfigurationNotFoundError | NoSuchBucket | NoSuchKey | NoSuchUpload | NoSuchVersion | NoSuchTagSet
            | NoSuchObjectLockConfiguration | ObjectLockConfigurationNotFoundError | NoSuchBucketPolicy
            | NoSuchPublicAccessBlockConfiguration | OwnershipControlsNotFoundError => 404,
            MethodNotAllowed => 405,
            BucketAlreadyExists | BucketAlreadyOwnedByYou | BucketNotEmpty | OperationAborted
            | InvalidBucketState => 409,
            InvalidObjectState => 403,
            MissingContentLength => 411,
            PreconditionFailed => 412,
            InvalidRange => 416,
            NotModified => 304,
            InternalError => 500,
            NotImplemented => 501,
            SlowDown | ServiceUnavailable => 503,
            StorageFull => 507,
            _ => 400,
        }
    }

    pub fn default_message(self) -> &'static str {
        use S3ErrorCode::*;
        match self {
            AccessDenied => "Access Denied",
            AccessControlListNotSupported => "The bucket does not allow ACLs",
            ExpiredToken => "The provided token has expired.",
            InvalidBucketAclWithObjectOwnership => "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting",
            InvalidToken => "The provided token is malformed or otherwise invalid.",
            MalformedACLError => "The XML you provided was not well-formed or did not validate against our published schema",
            MalformedPolicy => "Policies must be valid JSON and the first byte must be '{'",
            NoSuchBucketPolicy => "The bucket policy does not exist",
            NoSuchPublicAccessBlockConfiguration => "The public access block configuration was not found",
            OwnershipControlsNotFoundError => "The bucket ownership controls were not found",
            UnresolvableGrantByEmailAddress => "The e-mail address you provided does not match any account on record.",
            BadDigest => "The Content-MD5 or checksum you specified did not match what we received.",
            BucketAlreadyExists => "The requested bucket name is not available.",
            BucketAlreadyOwnedByYou => "Your previous request to create the named bucket succeeded and you already own it.",
            BucketNotEmpty => "The bucket you tried to delete is not empty",
            EntityTooLarge => "Your proposed upload exceeds the maximum allowed object size.",
            EntityTooSmall => "Your proposed upload is smaller than the minimum allowed object size.",
            IncompleteBody => "You did not provide the number of bytes specified by the Content-Length HTTP header.",
            InternalError => "We encountered an internal error. Please try again.",
            InvalidAccessKeyId => "The AWS Access Key Id you provided does not exist in our records.",
            InvalidBucketName => "The specified bucket is not valid.",
            InvalidBucketState => "The request is not valid with the current state of the bucket.",
            InvalidRetentionPeriod => "Default retention period must be a positive integer value.",
            InvalidTag => "The tag provided was not a valid tag.",
            InvalidObjectState => "The operation is not valid for the object's storage class",
            InvalidStorageClass => "The storage class you specified is not valid",
            NoSuchObjectLockConfiguration => "The specified object does not have a ObjectLock configuration",
            NoSuchTagSet => "The TagSet does not exist",
            ObjectLockConfigurationNotFoundError => "Object Lock configuration does not exist for this bucket",
            InvalidDigest => "The Content-MD5 you specified is not valid.",
            InvalidPart => "One or more of the specified parts could not be found.",
            InvalidPartOrder => "The list of parts was not in ascending order.",
            InvalidRange => "The requested range is not satisfiable",
            KeyTooLongError => "Your key is too long",
            InvalidURI => "Couldn't parse the specified URI.",
            MalformedXML => "The XML you provided was not well-formed or did not validate against our published schema.",
            MetadataTooLarge => "Your metadata headers exceed the maximum allowed metadata size.",
            MethodNotAllowed => "The specified method is not allowed against this resource.",
            MissingContentLength => "You must provide the Content-Length HTTP header.",
            MissingRequestBodyError => "Request Body is empty",
            NoSuchBucket => "The specified bucket does not exist",
            NoSuchKey => "The specified key does not exist.",
            NoSuchUpload => "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.",
            NoSuchVersion => "The specified version does not exist.",
            NotImplemented => "A header or operation you provided implies functionality that is not implemented.",
            PreconditionFailed => "At least one of the pre-conditions you specified did not hold",
            RequestTimeTooSkewed => "The difference between the request time and the server's time is too large.",
            RequestTimeout => "Your socket connection to the server was not read from or written to within the timeout period.",
            SignatureDoesNotMatch => "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
            SlowDown => "Please reduce your request rate.",
            TooManyBuckets => "You have attempted to create more buckets than allowed.",
            XAmzContentSHA256Mismatch => "The provided 'x-amz-content-sha256' header does not match what was computed.",
            NoSuchCORSConfiguration => "The CORS configuration does not exist",
            NoSuchLifecycleConfiguration => "The lifecycle configuration does not exist",
            ReplicationConfigurationNotFoundError => "The replication configuration was not found",
            ServerSideEncryptionConfigurationNotFoundError => "The server side encryption configuration was not found",
            CORSForbidden => "CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
            InvalidTargetBucketForLogging => "The target bucket for logging does not exist, is not owned by you, or does not have the appropriate grants for the log-delivery group.",
            MalformedPOSTRequest => "The body of your POST request is not well-formed multipart/form-data.",
            IncorrectNumberOfFilesInPostRequest => "POST requires exactly one file upload per request.",
            MaxPostPreDataLengthExceeded => "Your POST request fields preceding the upload file were too large.",
            StorageFull => "The storage is full: new data is refused until space is freed (deletes still work).",
            _ => "The request is not valid.",
        }
    }
}

impl fmt::Display for S3ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An S3 error with its code and a human message. Resource and RequestId are
/// added when the response is written (they belong to the request, not the error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct S3Error {
    pub code: S3ErrorCode,
    pub message: String,
    /// One more element of the error body, as S3 adds to some errors (for example
    /// `<HeadersNotSigned>` or `<Region>`): (element name, text).
    pub detail: Option<(&'static str, String)>,
}

impl S3Error {
    pub fn new(code: S3ErrorCode) -> Self {
        S3Error { code, message: code.default_message().to_string(), detail: None }
    }

    pub fn with_message(code: S3ErrorCode, message: impl Into<String>) -> Self {
        S3Error { code, message: message.into(), detail: None }
    }

    /// Adds an element to the error body (see [`S3Error::detail`]).
    pub fn with_detail(mut self, element: &'static str, text: impl Into<String>) -> Self {
        self.detail = Some((element, text.into()));
        self
    }

    pub fn status(&self) -> u16 {
        self.code.status()
    }
}

impl From<S3ErrorCode> for S3Error {
    fn from(code: S3ErrorCode) -> Self {
        S3Error::new(code)
    }
}

/// Result alias used across the protocol crate.
pub type S3Result<T> = Result<T, S3Error>;
