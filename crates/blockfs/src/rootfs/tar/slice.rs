//! Driving the parser over an archive held in memory.

use super::error::TarError;
use super::header::RECORD_SIZE;
use super::parser::TarParser;
use super::Event;

/// The events of an in-memory archive, in order, ending after
/// [`Event::End`] or at the end of the bytes; the first error ends them.
/// A regular file's data comes as one [`Event::Data`] slice of `archive`.
pub fn events(archive: &[u8]) -> Events<'_> {
    Events { parser: TarParser::new(), rest: archive, done: false }
}

pub struct Events<'a> {
    parser: TarParser,
    rest: &'a [u8],
    done: bool,
}

impl<'a> Events<'a> {
    fn at_end_of_bytes(&mut self) -> Option<TarError> {
        self.done = true;
        if let Err(error) = self.parser.finish() {
            return Some(error);
        }
        (!self.rest.is_empty())
            .then_some(TarError::PartialRecord { offset: self.parser.offset(), len: self.rest.len() })
    }
}

impl<'a> Iterator for Events<'a> {
    type Item = Result<Event<'a>, TarError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            if self.rest.len() < RECORD_SIZE {
                return self.at_end_of_bytes().map(Err);
            }
            let step = match self.parser.feed(self.rest) {
                Ok(step) => step,
                Err(error) => {
                    self.done = true;
                    return Some(Err(error));
                }
            };
            self.rest = &self.rest[step.consumed..];
            if let Some(event) = step.event {
                self.done = matches!(event, Event::End);
                return Some(Ok(event));
            }
        }
        None
    }
}
