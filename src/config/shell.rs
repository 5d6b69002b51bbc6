//! Reads a `config` file the way bash reads variable assignments, without
//! running anything.
//!
//! Vendors already have these files and source-compatible values matter:
//! quoting (`'...'`, `"..."`, `$'...'`, backslashes, concatenations),
//! multi-line quoted values, `export`, comments, and `$VAR`, `${VAR}`,
//! `${VAR:-default}`, `${VAR-default}`, `${VAR:+alt}`, `${VAR+alt}` expansion
//! from keys assigned earlier in the file, then from the environment the
//! caller passes in. Anything that would run a command (a command line,
//! `$(...)`, backticks, pipes, redirections) is an error naming its line:
//! the file is data, and we never execute it.
//!
//! Deliberate differences from bash, each in the safe direction:
//! - CRLF line ends are read as LF, so a file saved on Windows does not put a
//!   stray `\r` into every value.
//! - `$1`, `$@`, `$$` and other special parameters are errors: bash expands
//!   them to nothing when the file is sourced, which silently breaks a
//!   POST_RUN script written in double quotes.
//!
//! Pure code: no I/O, no process environment.

use std::collections::HashMap;

use thiserror::Error;

/// One `NAME=value` as bash would have assigned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub name: String,
    /// The value after quote removal and expansion.
    pub value: String,
    /// 1-based line where the assignment starts.
    pub line: usize,
}

/// A line of the config file that is not a plain assignment.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}: {kind}")]
pub struct ShellError {
    /// 1-based line of the problem (of the opening quote for unclosed quotes).
    pub line: usize,
    pub kind: ShellErrorKind,
}

/// What is wrong with a line. Messages never quote assigned values: a
/// mistyped line may hold a token or password.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ShellErrorKind {
    #[error("`{word}` is a command, not a variable assignment")]
    NotAnAssignment { word: String },
    #[error("`{name}` is not a valid variable name")]
    InvalidName { name: String },
    #[error("spaces around '=' after `{name}`: bash would run `{name}` as a command")]
    SpaceBeforeEquals { name: String },
    #[error(
        "space after '=' in `{name}=`: bash would set {name} empty and run the rest as a command"
    )]
    SpaceAfterEquals { name: String },
    #[error(
        "unquoted space in the value of {name}: bash would run the rest of the line as a command"
    )]
    CommandAfterAssignment { name: String },
    #[error("the {quote} quote opened here is never closed")]
    UnterminatedQuote { quote: char },
    #[error("`${{` opened here is never closed")]
    UnterminatedExpansion,
    #[error("bad substitution `{text}`")]
    BadSubstitution { text: String },
    #[error("{what} cannot be used: the config file is read, never run")]
    Unsupported { what: &'static str },
    #[error("`${param}` would expand to nothing when the config is read")]
    SpecialParameter { param: char },
}

/// Parses `text` into its assignments, in file order (a later assignment to
/// the same name wins, as in bash). `env` stands in for the process
/// environment: it answers expansions of names the file has not assigned.
/// Every bad line is reported, not just the first.
pub fn parse_assignments(
    text: &str,
    env: &HashMap<String, String>,
) -> Result<Vec<Assignment>, Vec<ShellError>> {
    let mut parser = Parser::new(text, env);
    let mut assignments = Vec::new();
    let mut errors = Vec::new();
    loop {
        parser.skip_separators();
        if parser.peek().is_none() {
            break;
        }
        if let Err(error) = parser.statement(&mut assignments) {
            errors.push(error);
            parser.skip_rest_of_line();
        }
    }
    if errors.is_empty() {
        Ok(assignments)
    } else {
        Err(errors)
    }
}

/// Where an expansion appears; quoting rules differ inside double quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    Unquoted,
    DoubleQuoted,
}

struct Parser<'a> {
    chars: Vec<char>,
    pos: usize,
    line: usize,
    env: &'a HashMap<String, String>,
    /// Variables assigned so far; they shadow `env`, as in bash.
    assigned: HashMap<String, String>,
}

impl<'a> Parser<'a> {
    fn new(text: &str, env: &'a HashMap<String, String>) -> Self {
        Self {
            chars: text.replace("\r\n", "\n").chars().collect(),
            pos: 0,
            line: 1,
            env,
            assigned: HashMap::new(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn error(&self, kind: ShellErrorKind) -> ShellError {
        ShellError {
            line: self.line,
            kind,
        }
    }

    fn lookup(&self, name: &str) -> Option<&str> {
        self.assigned
            .get(name)
            .or_else(|| self.env.get(name))
            .map(String::as_str)
    }

    /// Skips what may separate statements: blank lines, `;`, comments and
    /// line continuations.
    fn skip_separators(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' | '\n' | ';' => {
                    self.bump();
                }
                '#' => self.skip_comment(),
                '\\' if self.peek_at(1) == Some('\n') => {
                    self.bump();
                    self.bump();
                }
                _ => break,
            }
        }
    }

    /// Skips spaces and tabs (and line continuations) inside a statement.
    fn skip_blanks(&mut self) {
        loop {
            match self.peek() {
                Some(' ' | '\t') => {
                    self.bump();
                }
                Some('\\') if self.peek_at(1) == Some('\n') => {
                    self.bump();
                    self.bump();
                }
                _ => break,
            }
        }
    }

    fn skip_comment(&mut self) {
        while self.peek().is_some_and(|c| c != '\n') {
            self.bump();
        }
    }

    /// After an error, resume at the next line so later lines are checked too.
    fn skip_rest_of_line(&mut self) {
        while let Some(c) = self.bump() {
            if c == '\n' {
                break;
            }
        }
    }

    fn at_statement_end(&self) -> bool {
        matches!(self.peek(), None | Some('\n' | ';' | '#'))
    }

    fn at_assignment_operator(&self) -> bool {
        match self.peek() {
            Some('=') => true,
            Some('+') => self.peek_at(1) == Some('='),
            _ => false,
        }
    }

    /// Consumes a variable name (`[A-Za-z_][A-Za-z0-9_]*`), or nothing.
    fn scan_name(&mut self) -> String {
        let mut name = String::new();
        if self
            .peek()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        {
            while let Some(c) = self
                .peek()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            {
                name.push(c);
                self.bump();
            }
        }
        name
    }

    /// The shell word starting at `start`, for error messages: cut at `=` so
    /// a value is never echoed back.
    fn word_at(&self, start: usize) -> String {
        self.chars[start..]
            .iter()
            .take_while(|c| !c.is_whitespace() && !matches!(c, ';' | '='))
            .take(40)
            .collect()
    }

    /// One statement: `[export] NAME=value [NAME=value ...]`.
    fn statement(&mut self, out: &mut Vec<Assignment>) -> Result<(), ShellError> {
        let start = self.pos;
        let name = self.scan_name();
        if name == "export" && matches!(self.peek(), Some(' ' | '\t')) {
            return self.export_list(out);
        }
        if name.is_empty() || !self.at_assignment_operator() {
            return Err(self.not_an_assignment(start, &name));
        }
        let mut previous = self.assignment(name, out)?;
        loop {
            let before_blanks = self.pos;
            self.skip_blanks();
            if self.at_statement_end() {
                return Ok(());
            }
            let start = self.pos;
            let name = self.scan_name();
            if name.is_empty() || !self.at_assignment_operator() {
                // `NAME= word` leaves nothing between '=' and the blank.
                let kind = if self.chars[before_blanks - 1] == '=' {
                    ShellErrorKind::SpaceAfterEquals { name: previous }
                } else {
                    ShellErrorKind::CommandAfterAssignment { name: previous }
                };
                self.pos = start;
                return Err(self.error(kind));
            }
            previous = self.assignment(name, out)?;
        }
    }

    /// `export A=1 B` : assignments are kept, bare names are no-ops (they
    /// only mark variables for export, which means nothing here).
    fn export_list(&mut self, out: &mut Vec<Assignment>) -> Result<(), ShellError> {
        loop {
            self.skip_blanks();
            if self.at_statement_end() {
                return Ok(());
            }
            let start = self.pos;
            let name = self.scan_name();
            if !name.is_empty() && self.at_assignment_operator() {
                self.assignment(name, out)?;
            } else if name.is_empty()
                || !matches!(self.peek(), None | Some(' ' | '\t' | '\n' | ';'))
            {
                return Err(self.not_an_assignment(start, &name));
            }
        }
    }

    fn not_an_assignment(&mut self, start: usize, name: &str) -> ShellError {
        let word = self.word_at(start);
        if !name.is_empty() {
            self.skip_blanks();
            if self.peek() == Some('=') {
                return self.error(ShellErrorKind::SpaceBeforeEquals {
                    name: name.to_string(),
                });
            }
        }
        let rest_of_word = &self.chars[start + word.chars().count()..];
        if rest_of_word.first() == Some(&'=') {
            return self.error(ShellErrorKind::InvalidName { name: word });
        }
        self.error(ShellErrorKind::NotAnAssignment { word })
    }

    /// Parses `=value` or `+=value` after `name`; returns the name.
    fn assignment(
        &mut self,
        name: String,
        out: &mut Vec<Assignment>,
    ) -> Result<String, ShellError> {
        let line = self.line;
        let append = self.peek() == Some('+');
        if append {
            self.bump();
        }
        self.bump(); // '='
        let mut value = self.word()?;
        if append {
            value.insert_str(0, self.lookup(&name).unwrap_or_default());
        }
        self.assigned.insert(name.clone(), value.clone());
        out.push(Assignment {
            name: name.clone(),
            value,
            line,
        });
        Ok(name)
    }

    /// An unquoted word: the value of an assignment, up to an unquoted blank.
    fn word(&mut self) -> Result<String, ShellError> {
        let mut value = String::new();
        // Bash expands a leading `~` in assignments (CI_DIR=~/ember-ci).
        if self.peek() == Some('~')
            && matches!(self.peek_at(1), None | Some('/' | ' ' | '\t' | '\n' | ';'))
        {
            self.bump();
            value.push_str(self.lookup("HOME").unwrap_or("~"));
        }
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' | '\n' | ';' => break,
                '\\' => {
                    self.bump();
                    match self.bump() {
                        Some('\n') => {}
                        Some(escaped) => value.push(escaped),
                        None => value.push('\\'),
                    }
                }
                '\'' => value.push_str(&self.single_quoted()?),
                '"' => value.push_str(&self.double_quoted()?),
                '$' => value.push_str(&self.dollar(Context::Unquoted)?),
                _ => {
                    if let Some(what) = unsupported_operator(c) {
                        return Err(self.error(ShellErrorKind::Unsupported { what }));
                    }
                    self.bump();
                    value.push(c);
                }
            }
        }
        Ok(value)
    }

    /// Consumes an opening `quote` and returns the error to give if it is
    /// never closed: it names the line the quote opened on, where the
    /// mistake most likely is, not the end of the file.
    fn open_quote(&mut self, quote: char) -> ShellError {
        let unterminated = self.error(ShellErrorKind::UnterminatedQuote { quote });
        self.bump();
        unterminated
    }

    fn single_quoted(&mut self) -> Result<String, ShellError> {
        let unterminated = self.open_quote('\'');
        let mut value = String::new();
        loop {
            match self.bump() {
                Some('\'') => return Ok(value),
                Some(c) => value.push(c),
                None => return Err(unterminated),
            }
        }
    }

    fn double_quoted(&mut self) -> Result<String, ShellError> {
        let unterminated = self.open_quote('"');
        let mut value = String::new();
        loop {
            match self.peek() {
                None => return Err(unterminated),
                Some('"') => {
                    self.bump();
                    return Ok(value);
                }
                Some('\\') => {
                    self.bump();
                    // Inside double quotes a backslash only escapes these.
                    match self.peek() {
                        Some(c @ ('$' | '`' | '"' | '\\')) => {
                            self.bump();
                            value.push(c);
                        }
                        Some('\n') => {
                            self.bump();
                        }
                        _ => value.push('\\'),
                    }
                }
                Some('$') => value.push_str(&self.dollar(Context::DoubleQuoted)?),
                Some('`') => return Err(self.command_substitution()),
                Some(c) => {
                    self.bump();
                    value.push(c);
                }
            }
        }
    }

    /// `$'...'`: ANSI-C quoting, with the escapes config files use.
    fn ansi_c_quoted(&mut self) -> Result<String, ShellError> {
        let unterminated = self.open_quote('\'');
        let mut value = String::new();
        loop {
            match self.bump() {
                None => return Err(unterminated),
                Some('\'') => return Ok(value),
                Some('\\') => match self.bump() {
                    None => return Err(unterminated),
                    Some('n') => value.push('\n'),
                    Some('t') => value.push('\t'),
                    Some('r') => value.push('\r'),
                    Some('a') => value.push('\u{7}'),
                    Some('e' | 'E') => value.push('\u{1b}'),
                    Some(c @ ('\\' | '\'' | '"')) => value.push(c),
                    Some(other) => {
                        value.push('\\');
                        value.push(other);
                    }
                },
                Some(c) => value.push(c),
            }
        }
    }

    fn command_substitution(&self) -> ShellError {
        self.error(ShellErrorKind::Unsupported {
            what: "command substitution ($(...) or `...`)",
        })
    }

    /// Everything that starts with `$`.
    fn dollar(&mut self, context: Context) -> Result<String, ShellError> {
        self.bump();
        match self.peek() {
            Some('{') => self.braced(context),
            Some('(') => Err(self.command_substitution()),
            Some('\'') if context == Context::Unquoted => self.ansi_c_quoted(),
            // `$"..."` is a translatable string: the same text as "...".
            Some('"') if context == Context::Unquoted => Ok(String::new()),
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                let name = self.scan_name();
                Ok(self.lookup(&name).unwrap_or_default().to_string())
            }
            Some(c) if is_special_parameter(c) => {
                Err(self.error(ShellErrorKind::SpecialParameter { param: c }))
            }
            _ => Ok("$".to_string()),
        }
    }

    /// `${NAME}` and its `:-`, `-`, `:+`, `+` forms.
    fn braced(&mut self, context: Context) -> Result<String, ShellError> {
        let open_line = self.line;
        self.bump();
        let name = self.scan_name();
        if name.is_empty() {
            return Err(match self.peek() {
                Some(c) if is_special_parameter(c) && self.peek_at(1) == Some('}') => {
                    self.error(ShellErrorKind::SpecialParameter { param: c })
                }
                Some('#' | '!') => self.error(ShellErrorKind::Unsupported {
                    what: "`${#VAR}` and `${!VAR}`",
                }),
                None => ShellError {
                    line: open_line,
                    kind: ShellErrorKind::UnterminatedExpansion,
                },
                Some(c) => self.error(ShellErrorKind::BadSubstitution {
                    text: format!("${{{c}"),
                }),
            });
        }
        let value = self.lookup(&name).map(str::to_string);
        let colon = self.peek() == Some(':');
        let operator = if colon { self.peek_at(1) } else { self.peek() };
        match (colon, operator) {
            (false, Some('}')) => {
                self.bump();
                Ok(value.unwrap_or_default())
            }
            (_, Some(op @ ('-' | '+'))) => {
                if colon {
                    self.bump();
                }
                self.bump();
                let word = self.brace_word(context, open_line)?;
                // With ':' an empty value counts as unset.
                let is_set = value.as_deref().is_some_and(|v| !colon || !v.is_empty());
                Ok(match (op, is_set) {
                    ('-', true) => value.unwrap_or_default(),
                    ('-', false) => word,
                    (_, true) => word,
                    (_, false) => String::new(),
                })
            }
            (_, None) => Err(ShellError {
                line: open_line,
                kind: ShellErrorKind::UnterminatedExpansion,
            }),
            _ => Err(self.error(ShellErrorKind::Unsupported {
                what: "this parameter expansion (only ${VAR}, ${VAR:-default}, ${VAR-default}, \
                       ${VAR:+alternate} and ${VAR+alternate} are understood)",
            })),
        }
    }

    /// The word after `:-` etc., up to the `}` that closes the expansion.
    fn brace_word(&mut self, context: Context, open_line: usize) -> Result<String, ShellError> {
        let mut value = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(ShellError {
                        line: open_line,
                        kind: ShellErrorKind::UnterminatedExpansion,
                    })
                }
                Some('}') => {
                    self.bump();
                    return Ok(value);
                }
                Some('\\') => {
                    self.bump();
                    match self.peek() {
                        Some('\n') => {
                            self.bump();
                        }
                        Some(c)
                            if context == Context::Unquoted
                                || matches!(c, '$' | '`' | '"' | '\\' | '}') =>
                        {
                            self.bump();
                            value.push(c);
                        }
                        _ => value.push('\\'),
                    }
                }
                Some('\'') if context == Context::Unquoted => {
                    value.push_str(&self.single_quoted()?)
                }
                Some('"') => value.push_str(&self.double_quoted()?),
                Some('$') => value.push_str(&self.dollar(context)?),
                Some('`') => return Err(self.command_substitution()),
                Some(c) => {
                    self.bump();
                    value.push(c);
                }
            }
        }
    }
}

fn is_special_parameter(c: char) -> bool {
    c.is_ascii_digit() || matches!(c, '@' | '*' | '#' | '?' | '$' | '!' | '-')
}

/// Unquoted characters that would make bash do something other than assign.
fn unsupported_operator(c: char) -> Option<&'static str> {
    match c {
        '`' => Some("command substitution ($(...) or `...`)"),
        '|' => Some("a pipe"),
        '&' => Some("`&` (background jobs, `&&`)"),
        '<' | '>' => Some("a redirection"),
        '(' | ')' => Some("an array or subshell"),
        _ => None,
    }
}
