// Fused colour conversion of the VAE's decoded video for the H.264 encoder:
// f32 [3, F, H, W] in [-1, 1] (contiguous) -> one I420 buffer per frame (Y plane, then U,
// then V; W*H*3/2 bytes each), written back to back. One thread per 2x2 pixel block: it reads
// the block's 12 floats, writes 4 Y + 1 U + 1 V.
//
// It must be bit-exact with the CPU reference (crates/fv-inference/src/yuv.rs): the u8 step
// repeats candle's f32 ops from the pipeline (clamp, x*1+1, t*127.5+0, round half away from
// zero), and the BT.601 integer maths is openh264's RGB->I420 (fv_core::rgb_to_i420):
// Y = ((66 R + 129 G + 25 B) >> 8) + 16 per pixel; per 2x2 block, with r, g, b the rounded
// means (sum + 2) / 4, U = ((112 b - 38 r - 74 g) >> 8) + 128, V = ((112 r - 94 g - 18 b) >> 8)
// + 128 (floor shifts).
// The explicit __fadd_rn/__fmul_rn keep nvcc from fusing into an FMA (the build also passes
// -fmad=false).
//
// Regenerate the committed PTX with crates/fv-inference/kernels/build-ptx.sh (pinned nvcc
// 13.0.88, compute_80: the driver JITs it for sm_90 H100/H200).

__device__ __forceinline__ unsigned int to_u8(float x)
{
    // fmaxf/fminf send NaN to -1 (-> 0); candle's CPU clamp keeps NaN and its `as u8` gives 0.
    const float c = fminf(fmaxf(x, -1.0f), 1.0f);
    const float t = __fadd_rn(c, 1.0f);
    const float s = __fmul_rn(t, 127.5f);
    return (unsigned int)roundf(s);  // s is in [0, 255]; roundf rounds half away from zero
}

__device__ __forceinline__ unsigned char luma(unsigned int r, unsigned int g, unsigned int b)
{
    return (unsigned char)(((66u * r + 129u * g + 25u * b) >> 8) + 16u);
}

extern "C" __global__ void video_to_i420(
    const float* __restrict__ video,  // [3, frames, height, width], contiguous
    unsigned char* __restrict__ out,  // frames * height * width * 3 / 2 bytes
    unsigned int frames,
    unsigned int height,              // even
    unsigned int width)               // even
{
    const size_t half_w = width / 2;
    const size_t half_h = height / 2;
    const size_t blocks = (size_t)frames * half_h * half_w;
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= blocks) {
        return;
    }
    const size_t bx = i % half_w;
    const size_t by = (i / half_w) % half_h;
    const size_t f = i / (half_w * half_h);

    const size_t plane = (size_t)height * width;  // one channel of one frame
    const size_t channel = (size_t)frames * plane;  // distance between R, G and B
    const size_t x = 2 * bx;
    const size_t y = 2 * by;
    const float* px = video + f * plane + y * width + x;

    unsigned char* y_plane = out + f * (plane + plane / 2);
    unsigned char* u_plane = y_plane + plane;
    unsigned char* v_plane = u_plane + plane / 4;

    int sr = 0, sg = 0, sb = 0;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
        const size_t off = (size_t)(k >> 1) * width + (k & 1);
        const unsigned int r = to_u8(px[off]);
        const unsigned int g = to_u8(px[channel + off]);
        const unsigned int b = to_u8(px[2 * channel + off]);
        y_plane[(y + (k >> 1)) * width + x + (k & 1)] = luma(r, g, b);
        sr += (int)r;
        sg += (int)g;
        sb += (int)b;
    }
    // Chroma from the block's rounded means, as openh264 0.9.9's read_rgb8 does: its
    // `(x >> 8) + 128` is an arithmetic shift of a possibly negative x; x > -32768 here, so
    // `(x + 32768) >> 8` is the same value without relying on signed shifts.
    const int r = (sr + 2) >> 2;
    const int g = (sg + 2) >> 2;
    const int b = (sb + 2) >> 2;
    u_plane[by * half_w + bx] = (unsigned char)((112 * b - 38 * r - 74 * g + 32768) >> 8);
    v_plane[by * half_w + bx] = (unsigned char)((112 * r - 94 * g - 18 * b + 32768) >> 8);
}
