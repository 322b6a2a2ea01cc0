//! openh264 writes nothing to stderr: one warning line per encoder used to reach the
//! operator's log for every session.

use fv_core::Frame;
use fv_encoder::{EncoderConfig, StreamEncoder};
use std::process::Command;

const CHILD: &str = "FV_ENCODER_QUIET_CHILD";

/// In the child: encode a short segment, so openh264 initializes and runs.
fn encode_a_segment() {
    let config = EncoderConfig::new(64, 64, 24);
    let mut encoder = StreamEncoder::new(config).expect("encoder");
    encoder.start_segment();
    for i in 0..4u8 {
        let frame = Frame::from_rgb(64, 64, vec![i * 40; 64 * 64 * 3]).expect("frame");
        encoder.push(&frame).expect("encode");
    }
    encoder.finish_segment().expect("finish");
}

#[test]
fn openh264_prints_nothing_to_stderr() {
    if std::env::var_os(CHILD).is_some() {
        encode_a_segment();
        return;
    }
    // stderr of C code cannot be captured in-process: run this test again as a child.
    let exe = std::env::current_exe().expect("test binary");
    let output = Command::new(exe)
        .args([
            "--exact",
            "openh264_prints_nothing_to_stderr",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .output()
        .expect("run the child");
    assert!(output.status.success(), "child failed: {output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("OpenH264"),
        "openh264 wrote to stderr:\n{stderr}"
    );
}
