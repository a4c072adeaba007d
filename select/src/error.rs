//! S3 Select errors: AWS's codes, each with its HTTP status. Errors found
//! before the first event is sent become an ordinary S3 error response;
//! later ones become an error message in the event stream.

use std::fmt;

/// An S3 Select error code as AWS spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    // Lexer and parser.
    LexerInvalidChar,
    LexerInvalidLiteral,
    LexerInvalidOperator,
    ParseUnexpectedToken,
    ParseUnexpectedOperator,
    ParseUnexpectedTerm,
    ParseUnexpectedKeyword,
    ParseExpectedExpression,
    ParseExpectedKeyword,
    ParseExpectedTokenType,
    ParseExpectedTypeName,
    ParseExpectedIdentForAlias,
    ParseExpectedArgumentDelimiter,
    ParseExpectedLeftParenAfterCast,
    ParseExpectedLeftParenBuiltinFunctionCall,
    ParseExpectedRightParenBuiltinFunctionCall,
    ParseExpectedNumber,
    ParseEmptySelect,
    ParseSelectMissingFrom,
    ParseUnsupportedSelect,
    ParseUnsupportedSyntax,
    ParseUnknownOperator,
    ParseInvalidTypeParam,
    ParseCastArity,
    ParseNonUnaryAgregateFunctionCall,
    ParseAsteriskIsNotAloneInSelectList,
    ParseInvalidContextForWildcardInSelectList,
    UnsupportedSyntax,
    UnsupportedFunction,
    ExpressionTooLong,
    // Semantic and evaluation.
    InvalidColumnIndex,
    EvaluatorBindingDoesNotExist,
    EvaluatorInvalidArguments,
    IncorrectSqlFunctionArgumentType,
    IllegalSqlFunctionArgument,
    InvalidCast,
    CastFailed,
    IntegerOverflow,
    DivisionByZero,
    EvaluatorInvalidTimestampFormatPattern,
    EvaluatorTimestampFormatPatternDuplicateFields,
    InvalidDataType,
    AmbiguousFieldName,
    // Input data.
    CSVParsingError,
    JSONParsingError,
    ParquetParsingError,
    OverMaxRecordSize,
    OverMaxColumn,
    InvalidTextEncoding,
    TruncatedInput,
    InvalidCompressionFormat,
    // Request.
    InvalidExpressionType,
    InvalidFileHeaderInfo,
    InvalidJsonType,
    InvalidQuoteFields,
    InvalidRequestParameter,
    MissingRequiredParameter,
    ObjectSerializationConflict,
    InvalidScanRange,
    UnsupportedScanRangeInput,
    UnsupportedParquetType,
    InternalError,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        use Code::*;
        match self {
            LexerInvalidChar => "LexerInvalidChar",
            LexerInvalidLiteral => "LexerInvalidLiteral",
            LexerInvalidOperator => "LexerInvalidOperator",
            ParseUnexpectedToken => "ParseUnexpectedToken",
            ParseUnexpectedOperator => "ParseUnexpectedOperator",
            ParseUnexpectedTerm => "ParseUnexpectedTerm",
            ParseUnexpectedKeyword => "ParseUnexpectedKeyword",
            ParseExpectedExpression => "ParseExpectedExpression",
            ParseExpectedKeyword => "ParseExpectedKeyword",
            ParseExpectedTokenType => "ParseExpectedTokenType",
            ParseExpectedTypeName => "ParseExpectedTypeName",
            ParseExpectedIdentForAlias => "ParseExpectedIdentForAlias",
            ParseExpectedArgumentDelimiter => "ParseExpectedArgumentDelimiter",
            ParseExpectedLeftParenAfterCast => "ParseExpectedLeftParenAfterCast",
            ParseExpectedLeftParenBuiltinFunctionCall => "ParseExpectedLeftParenBuiltinFunctionCall",
            ParseExpectedRightParenBuiltinFunctionCall => "ParseExpectedRightParenBuiltinFunctionCall",
            ParseExpectedNumber => "ParseExpectedNumber",
            ParseEmptySelect => "ParseEmptySelect",
            ParseSelectMissingFrom => "ParseSelectMissingFrom",
            ParseUnsupportedSelect => "ParseUnsupportedSelect",
            ParseUnsupportedSyntax => "ParseUnsupportedSyntax",
            ParseUnknownOperator => "ParseUnknownOperator",
            ParseInvalidTypeParam => "ParseInvalidTypeParam",
            ParseCastArity => "ParseCastArity",
            ParseNonUnaryAgregateFunctionCall => "ParseNonUnaryAgregateFunctionCall",
            ParseAsteriskIsNotAloneInSelectList => "ParseAsteriskIsNotAloneInSelectList",
            ParseInvalidContextForWildcardInSelectList => "ParseInvalidContextForWildcardInSelectList",
            UnsupportedSyntax => "UnsupportedSyntax",
            UnsupportedFunction => "UnsupportedFunction",
            ExpressionTooLong => "ExpressionTooLong",
            InvalidColumnIndex => "InvalidColumnIndex",
            EvaluatorBindingDoesNotExist => "EvaluatorBindingDoesNotExist",
            EvaluatorInvalidArguments => "EvaluatorInvalidArguments",
            IncorrectSqlFunctionArgumentType => "IncorrectSqlFunctionArgumentType",
            IllegalSqlFunctionArgument => "IllegalSqlFunctionArgument",
            InvalidCast => "InvalidCast",
            CastFailed => "CastFailed",
            IntegerOverflow => "IntegerOverflow",
            DivisionByZero => "DivisionByZero",
            EvaluatorInvalidTimestampFormatPattern => "EvaluatorInvalidTimestampFormatPattern",
            EvaluatorTimestampFormatPatternDuplicateFields => "EvaluatorTimestampFormatPatternDuplicateFields",
            InvalidDataType => "InvalidDataType",
            AmbiguousFieldName => "AmbiguousFieldName",
            CSVParsingError => "CSVParsingError",
            JSONParsingError => "JSONParsingError",
            ParquetParsingError => "ParquetParsingError",
            OverMaxRecordSize => "OverMaxRecordSize",
            OverMaxColumn => "OverMaxColumn",
            InvalidTextEncoding => "InvalidTextEncoding",
            TruncatedInput => "TruncatedInput",
            InvalidCompressionFormat => "InvalidCompressionFormat",
            InvalidExpressionType => "InvalidExpressionType",
            InvalidFileHeaderInfo => "InvalidFileHeaderInfo",
            InvalidJsonType => "InvalidJsonType",
            InvalidQuoteFields => "InvalidQuoteFields",
            InvalidRequestParameter => "InvalidRequestParameter",
            MissingRequiredParameter => "MissingRequiredParameter",
            ObjectSerializationConflict => "ObjectSerializationConflict",
            InvalidScanRange => "InvalidScanRange",
            UnsupportedScanRangeInput => "UnsupportedScanRangeInput",
            UnsupportedParquetType => "UnsupportedParquetType",
            InternalError => "InternalError",
        }
    }

    /// The HTTP status of the error when it is answered before the stream.
    pub fn status(self) -> u16 {
        match self {
            Code::InternalError => 500,
            _ => 400,
        }
    }
}

/// An S3 Select error: a code and a message for the client. Messages never
/// carry object bytes beyond the short token or value that caused them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectError {
    pub code: Code,
    pub message: String,
}

/// Longest piece of input quoted in an error message.
pub const MAX_QUOTED_BYTES: usize = 64;

impl SelectError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        SelectError { code, message: message.into() }
    }

    /// Quotes `s`, cut to `MAX_QUOTED_BYTES` on a char boundary.
    pub fn quote(s: &str) -> String {
        let mut end = s.len().min(MAX_QUOTED_BYTES);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        if end < s.len() {
            format!("'{}...'", &s[..end])
        } else {
            format!("'{s}'")
        }
    }
}

impl fmt::Display for SelectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for SelectError {}

pub type Result<T> = std::result::Result<T, SelectError>;

pub(crate) fn err<T>(code: Code, message: impl Into<String>) -> Result<T> {
    Err(SelectError::new(code, message))
}
