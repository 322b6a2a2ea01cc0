//! initial_image: every rejection and acceptance, and temp-file lifetime.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use fv_session::{ImageKind, InitImageError, MAX_INIT_IMAGE_BYTES, decode_initial_image};
use serde_json::{Value, json};

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
const JPEG: &[u8] = &[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F'];
const WEBP: &[u8] = b"RIFF\x24\0\0\0WEBPVP8 ";

fn image(mime: &str, bytes: &[u8]) -> Value {
    json!({ "mime": mime, "name": "dir/pic", "data": STANDARD.encode(bytes) })
}

fn reject(value: Value) -> InitImageError {
    decode_initial_image(&value, MAX_INIT_IMAGE_BYTES).expect_err("must be rejected")
}

#[test]
fn null_and_empty_object_mean_no_image() {
    for v in [Value::Null, json!({})] {
        let got = decode_initial_image(&v, MAX_INIT_IMAGE_BYTES).expect("falsy value is fine");
        assert!(got.is_none());
    }
}

#[test]
fn accepts_each_mime_with_matching_bytes() {
    for (mime, bytes, kind, ext) in [
        ("image/png", PNG, ImageKind::Png, ".png"),
        ("image/jpeg", JPEG, ImageKind::Jpeg, ".jpg"),
        ("image/jpg", JPEG, ImageKind::Jpeg, ".jpg"),
        ("image/webp", WEBP, ImageKind::Webp, ".webp"),
    ] {
        let img = decode_initial_image(&image(mime, bytes), MAX_INIT_IMAGE_BYTES)
            .expect("valid image")
            .expect("present");
        assert_eq!(img.kind(), kind);
        assert_eq!(img.kind().extension(), ext);
        assert_eq!(img.mime(), mime);
        assert_eq!(img.bytes(), bytes);
        assert_eq!(img.len(), bytes.len());
        assert!(!img.is_empty());
        assert_eq!(img.name(), Some("pic"));
    }
}

#[test]
fn name_is_reduced_to_basename() {
    let cases = [
        (json!("C:\\Users\\me\\cat.png"), Some("cat.png")),
        (json!("/tmp/../x/cat.png"), Some("cat.png")),
        (json!("mixed/a\\b.png"), Some("b.png")),
        (json!("plain.png"), Some("plain.png")),
        (json!("trailing/"), None),
        (json!(""), None),
        (Value::Null, None),
    ];
    for (name, expected) in cases {
        let v = json!({ "mime": "image/png", "name": name, "data": STANDARD.encode(PNG) });
        let img = decode_initial_image(&v, MAX_INIT_IMAGE_BYTES)
            .expect("valid")
            .expect("present");
        assert_eq!(img.name(), expected, "name {name}");
    }
    let long = "é".repeat(300);
    let v = json!({ "mime": "image/png", "name": long, "data": STANDARD.encode(PNG) });
    let img = decode_initial_image(&v, MAX_INIT_IMAGE_BYTES)
        .expect("valid")
        .expect("present");
    assert!(img.name().expect("name kept").len() <= fv_session::init_image::MAX_NAME_BYTES);
}

#[test]
fn non_objects_are_rejected() {
    for v in [json!(false), json!(1), json!("x"), json!([])] {
        let err = reject(v);
        assert!(matches!(err, InitImageError::NotAnObject(_)), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("initial_image: expected an object")
        );
    }
}

#[test]
fn mime_rejections_name_the_field() {
    let data = STANDARD.encode(PNG);
    let err = reject(json!({ "data": data }));
    assert!(matches!(err, InitImageError::MissingMime));
    assert_eq!(err.to_string(), "initial_image.mime: missing");

    let err = reject(json!({ "mime": 5, "data": data }));
    assert_eq!(
        err.to_string(),
        "initial_image.mime: expected a string, got a number"
    );

    let err = reject(json!({ "mime": "image/gif", "data": data }));
    assert_eq!(
        err.to_string(),
        "initial_image.mime: unsupported type \"image/gif\" (expected image/png, image/jpeg, image/jpg or image/webp)"
    );

    // Case-sensitive and exact.
    for mime in ["IMAGE/PNG", "image/png ", "image/png; charset=x", ""] {
        let err = reject(json!({ "mime": mime, "data": data }));
        assert!(matches!(err, InitImageError::UnsupportedMime(_)), "{mime}");
    }

    // A huge mime value is not echoed in full.
    let err = reject(json!({ "mime": "x".repeat(10_000), "data": data }));
    assert!(err.to_string().len() < 300);
}

#[test]
fn name_must_be_a_string() {
    let err = reject(json!({ "mime": "image/png", "name": 3, "data": STANDARD.encode(PNG) }));
    assert_eq!(
        err.to_string(),
        "initial_image.name: expected a string, got a number"
    );
}

#[test]
fn data_rejections_name_the_field() {
    let err = reject(json!({ "mime": "image/png" }));
    assert_eq!(err.to_string(), "initial_image.data: missing");

    let err = reject(json!({ "mime": "image/png", "data": [1, 2] }));
    assert_eq!(
        err.to_string(),
        "initial_image.data: expected a base64 string, got an array"
    );

    let err = reject(json!({ "mime": "image/png", "data": "" }));
    assert!(matches!(err, InitImageError::Empty));
    assert_eq!(err.to_string(), "initial_image.data: empty image");
}

#[test]
fn base64_is_strict() {
    let good = STANDARD.encode(PNG);
    let cases = [
        format!(" {good}"),                        // leading whitespace
        format!("{}\n{}", &good[..4], &good[4..]), // newline inside
        good.replace('=', ""),                     // missing padding
        format!("{good}="),                        // extra padding
        good.replace('A', "-"),                    // url-safe alphabet char
        format!("{}*", &good[..good.len() - 1]),   // non-alphabet char
        "====".to_string(),
    ];
    for data in cases {
        let err = reject(json!({ "mime": "image/png", "data": data }));
        assert!(
            matches!(
                err,
                InitImageError::InvalidBase64(_) | InitImageError::Empty
            ),
            "{data:?}: {err:?}"
        );
        assert!(err.to_string().starts_with("initial_image.data: "), "{err}");
    }
    let tabbed = format!("{}\t{}", &good[..4], &good[5..]);
    let err = reject(json!({ "mime": "image/png", "data": tabbed }));
    assert_eq!(
        err.to_string(),
        "initial_image.data: invalid base64: invalid character byte 0x09 at offset 4"
    );
}

#[test]
fn size_limit_is_inclusive_and_checked_before_decoding() {
    // Exactly at the limit: accepted.
    let mut exact = PNG.to_vec();
    exact.resize(30, 0);
    let v = json!({ "mime": "image/png", "data": STANDARD.encode(&exact) });
    assert!(decode_initial_image(&v, 30).expect("at limit").is_some());

    // One byte over: rejected with the sizes.
    let mut over = exact.clone();
    over.push(0);
    let v = json!({ "mime": "image/png", "data": STANDARD.encode(&over) });
    let err = decode_initial_image(&v, 30).expect_err("over limit");
    assert!(matches!(
        err,
        InitImageError::TooLarge { size: 31, max: 30 }
    ));
    assert_eq!(
        err.to_string(),
        "initial_image.data: image is 31 bytes, more than the 30 byte limit"
    );

    // An oversized string of garbage is refused by length, not by decoding.
    let v = json!({ "mime": "image/png", "data": "*".repeat(400) });
    let err = decode_initial_image(&v, 30).expect_err("huge");
    assert!(
        matches!(err, InitImageError::TooLarge { size: 300, .. }),
        "{err:?}"
    );
}

#[test]
fn default_limit_is_32_mib() {
    assert_eq!(MAX_INIT_IMAGE_BYTES, 33_554_432);
    let mut bytes = PNG.to_vec();
    bytes.resize(MAX_INIT_IMAGE_BYTES + 1, 0);
    let v = json!({ "mime": "image/png", "data": STANDARD.encode(&bytes) });
    let err = reject(v);
    assert!(matches!(
        err,
        InitImageError::TooLarge {
            size: 33_554_433,
            max: MAX_INIT_IMAGE_BYTES
        }
    ));
    bytes.truncate(MAX_INIT_IMAGE_BYTES);
    let v = json!({ "mime": "image/png", "data": STANDARD.encode(&bytes) });
    let img = decode_initial_image(&v, MAX_INIT_IMAGE_BYTES)
        .expect("32 MiB exactly is allowed")
        .expect("present");
    assert_eq!(img.len(), MAX_INIT_IMAGE_BYTES);
}

#[test]
fn bytes_must_be_a_supported_image() {
    let cases: [(&str, &[u8]); 4] = [
        ("image/jpg", b"GIF89a"),
        ("image/webp", b"RIFF\0\0\0\0WAVEfmt "),
        ("image/webp", b"RIFF\0\0\0\0WEB"),
        ("image/png", b"\x89PNG"),
    ];
    for (mime, bytes) in cases {
        let err = reject(image(mime, bytes));
        assert!(matches!(err, InitImageError::WrongFormat), "{mime}");
        assert_eq!(
            err.to_string(),
            "initial_image.data is not a PNG, JPEG or WebP image"
        );
    }
}

#[test]
fn a_mislabelled_image_is_kept_with_its_real_format() {
    let img = decode_initial_image(&image("image/png", JPEG), MAX_INIT_IMAGE_BYTES)
        .expect("a JPEG labelled PNG is accepted")
        .expect("present");
    assert_eq!(img.kind(), ImageKind::Jpeg);
    let persisted = img.persist(None).expect("persist");
    assert!(persisted.path().to_string_lossy().ends_with(".jpg"));
}
