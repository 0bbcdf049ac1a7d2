//! Writing a snapshot: sections streamed into a temporary file, then the
//! footer, fsync, rename to the final name, fsync of the directory.

use super::dir::{file_name, temp_name};
use super::format::{self, Footer, Kind, MAGIC, SnapshotHeader};
use super::read::SnapshotError;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// A snapshot being written. Dropped before [`finish`](Self::finish), it
/// removes its temporary file: no partial snapshot ever has a final name.
#[derive(Debug)]
pub struct SnapshotWriter {
    dir: PathBuf,
    temp: PathBuf,
    name: String,
    out: Option<BufWriter<File>>,
    hash: blake3::Hasher,
    sections: u64,
    bytes: u64,
    frame: Vec<u8>,
    /// Set once the file has its final name: until then, dropping the
    /// writer removes the temporary file (also when `finish` fails half
    /// way, e.g. its flush or fsync on a full disk).
    renamed: bool,
}

impl SnapshotWriter {
    /// Starts `dir/<position>-<id>.msgpack` (as a temporary file) with its
    /// header. `dir` is created if absent.
    pub fn create(dir: &Path, header: &SnapshotHeader) -> Result<Self, SnapshotError> {
        std::fs::create_dir_all(dir).map_err(|e| SnapshotError::io(dir, e))?;
        let name = file_name(header.position, &header.id);
        let temp = dir.join(temp_name(&name));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(|e| SnapshotError::io(&temp, e))?;
        let mut writer = SnapshotWriter {
            dir: dir.to_owned(),
            temp,
            name,
            out: Some(BufWriter::with_capacity(1 << 20, file)),
            hash: blake3::Hasher::new(),
            sections: 0,
            bytes: 0,
            frame: Vec::new(),
            renamed: false,
        };
        writer.raw(&MAGIC)?;
        let body =
            rmp_serde::to_vec_named(header).map_err(|e| SnapshotError::encode(&writer.temp, e))?;
        writer.frame(Kind::Header, &body)?;
        Ok(writer)
    }

    /// Appends one section: MessagePack the caller encoded (named fields).
    pub fn section(&mut self, body: &[u8]) -> Result<(), SnapshotError> {
        self.sections += 1;
        self.frame(Kind::Section, body)
    }

    /// Writes the footer, makes the file durable under its final name, and
    /// returns that path and the file's size.
    pub fn finish(mut self) -> Result<(PathBuf, u64), SnapshotError> {
        let footer = Footer {
            sections: self.sections,
            content_hash: *self.hash.finalize().as_bytes(),
        };
        let body =
            rmp_serde::to_vec_named(&footer).map_err(|e| SnapshotError::encode(&self.temp, e))?;
        self.frame(Kind::Footer, &body)?;
        let Some(out) = self.out.take() else {
            return Err(SnapshotError::io(
                &self.temp,
                std::io::Error::other("finished twice"),
            ));
        };
        let file = out
            .into_inner()
            .map_err(|e| SnapshotError::io(&self.temp, e.into_error()))?;
        file.sync_all()
            .map_err(|e| SnapshotError::io(&self.temp, e))?;
        drop(file);
        let path = self.dir.join(&self.name);
        std::fs::rename(&self.temp, &path).map_err(|e| SnapshotError::io(&path, e))?;
        self.renamed = true;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| SnapshotError::io(&self.dir, e))?;
        Ok((path, self.bytes))
    }

    fn frame(&mut self, kind: Kind, body: &[u8]) -> Result<(), SnapshotError> {
        if body.len() >= format::MAX_FRAME {
            return Err(SnapshotError::Invalid {
                path: self.temp.clone(),
                offset: self.bytes,
                reason: format!(
                    "a section of {} bytes exceeds the {}-byte frame limit",
                    body.len(),
                    format::MAX_FRAME
                ),
            });
        }
        if kind != Kind::Footer {
            self.hash.update(&[kind as u8]);
            self.hash.update(body);
        }
        let mut frame = std::mem::take(&mut self.frame);
        frame.clear();
        format::encode_frame(&mut frame, kind, body);
        let result = self.raw(&frame);
        self.frame = frame;
        result
    }

    fn raw(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        let Some(out) = self.out.as_mut() else {
            return Err(SnapshotError::io(
                &self.temp,
                std::io::Error::other("finished"),
            ));
        };
        out.write_all(bytes)
            .map_err(|e| SnapshotError::io(&self.temp, e))?;
        self.bytes += bytes.len() as u64;
        Ok(())
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        if !self.renamed {
            // Abandoned (an error, or the caller gave up): no partial file.
            drop(self.out.take());
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}
