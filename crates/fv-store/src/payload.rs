//! Moving large inline fields of a continuation payload into a [`BlobStore`] and back
//! (protocol-facts §10, `ltx2.v1`):
//!
//! * `video: {"frames_b64": [PNG base64, …]}` ⇄ `video: {"blob_id": id, "frame_count": n}`;
//!   the blob is the packed frame format: a 4-byte big-endian count, then per frame a 4-byte
//!   big-endian length and the PNG bytes.
//! * `audio: {"safetensors_b64": str}` ⇄ `audio: {"blob_id": id}`; the blob is the safetensors
//!   bytes.
//!
//! A field moves when its decoded bytes exceed the threshold (default
//! [`DEFAULT_INLINE_MAX_BYTES`], 2 MiB as upstream); smaller ones stay inline. Other keys of
//! the `video`/`audio` objects and the rest of the payload are kept as they are, so
//! `hydrate(dehydrate(p)) == p`.

use crate::{BlobStore, StoreError};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value};

/// Default inline limit: fields whose decoded bytes exceed 2 MiB go to the blob store.
pub const DEFAULT_INLINE_MAX_BYTES: usize = 2 * 1024 * 1024;

/// Mime type of a packed frame blob.
pub const PACKED_FRAMES_MIME: &str = "application/x-fv-packed-png-frames";
/// Mime type of an audio blob.
pub const SAFETENSORS_MIME: &str = "application/x-safetensors";

/// Packs frames as a 4-byte big-endian count, then per frame a 4-byte big-endian length and the
/// bytes. Fails if there are more than `u32::MAX` frames or a frame is 4 GiB or larger.
pub fn pack_frames<B: AsRef<[u8]>>(frames: &[B]) -> Result<Vec<u8>, StoreError> {
    let too_big = |what: &str| StoreError::InvalidInput {
        field: "payload.video.frames_b64".to_string(),
        reason: format!("{what} does not fit the packed frame format's 32-bit field"),
    };
    let count = u32::try_from(frames.len()).map_err(|_| too_big("frame count"))?;
    let total: usize = frames.iter().map(|f| 4 + f.as_ref().len()).sum();
    let mut out = Vec::with_capacity(4 + total);
    out.extend_from_slice(&count.to_be_bytes());
    for frame in frames {
        let frame = frame.as_ref();
        let len = u32::try_from(frame.len()).map_err(|_| too_big("frame length"))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(frame);
    }
    Ok(out)
}

/// Splits a packed frame blob into its frames (borrowing from `packed`). Every length is
/// checked against the bytes left, so a corrupt blob is an error, never a panic or a huge
/// allocation.
pub fn unpack_frames(packed: &[u8]) -> Result<Vec<&[u8]>, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        what: "packed frame blob".to_string(),
        reason,
    };
    let (count, mut rest) =
        split_u32(packed).ok_or_else(|| corrupt("shorter than its 4-byte count".into()))?;
    // Each frame needs at least its 4-byte length, which bounds the count by the data.
    if count as usize > rest.len() / 4 {
        return Err(corrupt(format!(
            "count {count} does not fit {} bytes",
            packed.len()
        )));
    }
    let mut frames = Vec::with_capacity(count as usize);
    for i in 0..count {
        let (len, tail) =
            split_u32(rest).ok_or_else(|| corrupt(format!("frame {i}: length missing")))?;
        let len = len as usize;
        if len > tail.len() {
            return Err(corrupt(format!(
                "frame {i}: length {len} exceeds the {} bytes left",
                tail.len()
            )));
        }
        let (frame, tail) = tail.split_at(len);
        frames.push(frame);
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(corrupt(format!(
            "{} trailing bytes after {count} frames",
            rest.len()
        )));
    }
    Ok(frames)
}

fn split_u32(bytes: &[u8]) -> Option<(u32, &[u8])> {
    let (head, tail) = bytes.split_first_chunk::<4>()?;
    Some((u32::from_be_bytes(*head), tail))
}

/// A payload with its large fields moved out.
#[derive(Debug, Clone, PartialEq)]
pub struct Dehydrated {
    /// The payload with `{blob_id, …}` references in place of the moved fields.
    pub payload: Map<String, Value>,
    /// Ids of the blobs this call stored (`video` first, then `audio`).
    pub blob_ids: Vec<String>,
    /// Which fields moved (`"video"`, `"audio"`), in the same order as `blob_ids`.
    pub fields: Vec<&'static str>,
    /// Decoded bytes moved into the blob store.
    pub moved_bytes: usize,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> StoreError {
    StoreError::InvalidInput {
        field: field.into(),
        reason: reason.into(),
    }
}

fn decode(field: &str, value: &Value) -> Result<Vec<u8>, StoreError> {
    let text = value
        .as_str()
        .ok_or_else(|| invalid(field, "must be a base64 string"))?;
    B64.decode(text)
        .map_err(|e| invalid(field, format!("invalid base64: {e}")))
}

/// Moves `video.frames_b64` and `audio.safetensors_b64` into `blobs` (owned by `session_id`)
/// when their decoded size exceeds `inline_max_bytes`. The input is not changed. If a put
/// fails, blobs already stored by this call are dropped (best effort) and the error returned.
pub async fn dehydrate(
    payload: &Map<String, Value>,
    blobs: &dyn BlobStore,
    session_id: &str,
    inline_max_bytes: usize,
) -> Result<Dehydrated, StoreError> {
    let mut out = Dehydrated {
        payload: payload.clone(),
        blob_ids: Vec::new(),
        fields: Vec::new(),
        moved_bytes: 0,
    };
    let result = dehydrate_into(&mut out, blobs, session_id, inline_max_bytes).await;
    if let Err(e) = result {
        for id in &out.blob_ids {
            if let Err(drop_err) = blobs.drop_blob(id).await {
                tracing::warn!(blob_id = %id, error = %drop_err, "cannot drop a blob of a failed dehydrate");
            }
        }
        return Err(e);
    }
    Ok(out)
}

async fn dehydrate_into(
    out: &mut Dehydrated,
    blobs: &dyn BlobStore,
    session_id: &str,
    inline_max_bytes: usize,
) -> Result<(), StoreError> {
    if let Some(Value::Object(video)) = out.payload.get_mut("video")
        && let Some(frames_value) = video.get("frames_b64")
    {
        let list = frames_value.as_array().ok_or_else(|| {
            invalid(
                "payload.video.frames_b64",
                "must be an array of base64 strings",
            )
        })?;
        let frames = list
            .iter()
            .enumerate()
            .map(|(i, f)| decode(&format!("payload.video.frames_b64[{i}]"), f))
            .collect::<Result<Vec<_>, _>>()?;
        let size: usize = frames.iter().map(Vec::len).sum();
        if size > inline_max_bytes {
            let packed = pack_frames(&frames)?;
            let id = blobs.put(session_id, packed, PACKED_FRAMES_MIME).await?;
            video.remove("frames_b64");
            video.insert("blob_id".into(), Value::String(id.clone()));
            video.insert("frame_count".into(), Value::from(frames.len()));
            out.blob_ids.push(id);
            out.fields.push("video");
            out.moved_bytes += size;
        }
    }
    if let Some(Value::Object(audio)) = out.payload.get_mut("audio")
        && let Some(value) = audio.get("safetensors_b64")
    {
        let bytes = decode("payload.audio.safetensors_b64", value)?;
        let size = bytes.len();
        if size > inline_max_bytes {
            let id = blobs.put(session_id, bytes, SAFETENSORS_MIME).await?;
            audio.remove("safetensors_b64");
            audio.insert("blob_id".into(), Value::String(id.clone()));
            out.blob_ids.push(id);
            out.fields.push("audio");
            out.moved_bytes += size;
        }
    }
    Ok(())
}

/// Blob ids a payload refers to (`video.blob_id`, `audio.blob_id`).
pub fn blob_refs(payload: &Map<String, Value>) -> Vec<String> {
    ["video", "audio"]
        .iter()
        .filter_map(|field| payload.get(*field)?.get("blob_id")?.as_str())
        .map(str::to_string)
        .collect()
}

/// Replaces `{blob_id, …}` references in `video` and `audio` by the inline fields, fetching the
/// blobs from `blobs`. A missing blob (expired, evicted) is [`StoreError::NotFound`]; a
/// `frame_count` that disagrees with the blob is [`StoreError::Corrupt`].
pub async fn hydrate(
    payload: &Map<String, Value>,
    blobs: &dyn BlobStore,
) -> Result<Map<String, Value>, StoreError> {
    let mut payload = payload.clone();
    if let Some(Value::Object(video)) = payload.get_mut("video")
        && let Some(id) = video.get("blob_id")
    {
        let id = id
            .as_str()
            .ok_or_else(|| invalid("payload.video.blob_id", "must be a string"))?
            .to_string();
        let packed = blobs.get(&id).await?;
        let frames = unpack_frames(&packed)?;
        if let Some(count) = video.get("frame_count") {
            let count = count.as_u64().ok_or_else(|| {
                invalid(
                    "payload.video.frame_count",
                    "must be a non-negative integer",
                )
            })?;
            if count != frames.len() as u64 {
                return Err(StoreError::Corrupt {
                    what: format!("blob {id}"),
                    reason: format!(
                        "holds {} frames, video.frame_count says {count}",
                        frames.len()
                    ),
                });
            }
        }
        let encoded = frames
            .iter()
            .map(|f| Value::String(B64.encode(f)))
            .collect();
        video.remove("blob_id");
        video.remove("frame_count");
        video.insert("frames_b64".into(), Value::Array(encoded));
    }
    if let Some(Value::Object(audio)) = payload.get_mut("audio")
        && let Some(id) = audio.get("blob_id")
    {
        let id = id
            .as_str()
            .ok_or_else(|| invalid("payload.audio.blob_id", "must be a string"))?
            .to_string();
        let bytes = blobs.get(&id).await?;
        audio.remove("blob_id");
        audio.insert("safetensors_b64".into(), Value::String(B64.encode(bytes)));
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_unpack_round_trip() {
        let frames: Vec<Vec<u8>> = vec![vec![], vec![1], vec![2; 300]];
        let packed = pack_frames(&frames).expect("pack");
        assert_eq!(&packed[..4], &[0, 0, 0, 3]);
        assert_eq!(&packed[4..8], &[0, 0, 0, 0]);
        assert_eq!(&packed[8..12], &[0, 0, 0, 1]);
        assert_eq!(packed.len(), 4 + 3 * 4 + 301);
        let back = unpack_frames(&packed).expect("unpack");
        assert_eq!(back, vec![&[][..], &[1][..], &[2; 300][..]]);
        assert_eq!(
            unpack_frames(&[0, 0, 0, 0]).expect("no frames"),
            Vec::<&[u8]>::new()
        );
    }

    #[test]
    fn corrupt_packed_blobs_are_errors() {
        let cases: [(&[u8], &str); 5] = [
            (&[], "shorter than its 4-byte count"),
            (
                &[0xff, 0xff, 0xff, 0xff],
                "count 4294967295 does not fit 4 bytes",
            ),
            (
                &[0, 0, 0, 1, 0, 0, 0, 9, 1],
                "frame 0: length 9 exceeds the 1 bytes left",
            ),
            (
                &[0, 0, 0, 2, 0, 0, 0, 1, 5, 0, 0, 0],
                "frame 1: length missing",
            ),
            (
                &[0, 0, 0, 1, 0, 0, 0, 0, 7],
                "1 trailing bytes after 1 frames",
            ),
        ];
        for (bytes, reason) in cases {
            let err = unpack_frames(bytes).expect_err(reason);
            assert_eq!(
                err,
                StoreError::Corrupt {
                    what: "packed frame blob".into(),
                    reason: reason.into()
                }
            );
        }
    }
}
