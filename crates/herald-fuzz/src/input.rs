//! Reads a fuzz input as the targets' small byte formats: fixed-size knobs first, then
//! text parts separated by NUL bytes. Every byte string is a valid input (missing knobs
//! read as zero, a missing part as empty), so every mutation reaches the code under test,
//! and seeds can be written by hand (`printf 'knobs\0title\0body'`).

/// A cursor over one fuzz input.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// A cursor at the start of `data`.
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data }
    }

    /// The next byte, or 0 at the end.
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&first, rest)) => {
                self.data = rest;
                first
            }
            None => 0,
        }
    }

    /// The next two bytes, big-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    /// The next four bytes, big-endian.
    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    /// The bytes up to the next NUL (which is consumed), or the rest.
    pub fn part(&mut self) -> &'a [u8] {
        match self.data.iter().position(|&b| b == 0) {
            Some(end) => {
                let part = &self.data[..end];
                self.data = &self.data[end + 1..];
                part
            }
            None => self.rest(),
        }
    }

    /// [`Input::part`] as text, invalid UTF-8 replaced.
    pub fn text(&mut self) -> String {
        String::from_utf8_lossy(self.part()).into_owned()
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}
