// Zero-knowledge glucose claims: the day step and the final claim (glucoledger, issue 19).
//
// A window is one local day of N fixed five-minute slots; a slot holds a reading in mg/dL
// (1..1023) or 0 for "no reading". K readings of 10 bits are packed per field element, and the
// day's commitment is a Poseidon chain: h_0 = Poseidon(salt, e_0), h_j = Poseidon(h_{j-1}, e_j),
// commitment = h_{N/K - 1}. Python computes the same (glucoledger/zk/windows.py).
//
// A running total over days, acc = (valid, inRange, below54, sum), is carried from one day's
// proof to the next hidden in a commitment Poseidon(pack(acc), r), pack(acc) = valid +
// inRange * 2^40 + below54 * 2^80 + sum * 2^120, each part range-checked to 40 bits so the
// packing is one-to-one. The first day starts from Poseidon(0, 0) (acc = 0, r = 0), a value
// the verifier sets itself; the claim circuit opens the last total against the claim.
pragma circom 2.0.0;

include "poseidon.circom";
include "comparators.circom";
include "bitify.circom";

template AccOpen() {
    signal input acc[4];
    signal input r;
    signal output commit;
    component bits[4];
    for (var i = 0; i < 4; i++) {
        bits[i] = Num2Bits(40);
        bits[i].in <== acc[i];
    }
    component h = Poseidon(2);
    h.inputs[0] <== acc[0] + acc[1] * (2 ** 40) + acc[2] * (2 ** 80) + acc[3] * (2 ** 120);
    h.inputs[1] <== r;
    commit <== h.out;
}

// One day: the readings open the ledger's commitment, and accOut = accIn + this day's counts.
// In range is 70..180 mg/dL inclusive, below is < 54 mg/dL (International Consensus on Time in
// Range, Battelino et al., Diabetes Care 2019;42:1593).
template Day(N, K) {
    signal input dayCommit;
    signal input accInCommit;
    signal input accOutCommit;
    signal input readings[N];
    signal input salt;
    signal input accIn[4];
    signal input rIn;
    signal input rOut;

    component openIn = AccOpen();
    for (var i = 0; i < 4; i++) { openIn.acc[i] <== accIn[i]; }
    openIn.r <== rIn;
    openIn.commit === accInCommit;

    component bits[N];
    component zero[N];
    component ge54[N];
    component ge70[N];
    component gt180[N];
    var nValid = 0;
    var nIn = 0;
    var nBelow = 0;
    var total = 0;
    for (var i = 0; i < N; i++) {
        bits[i] = Num2Bits(10);
        bits[i].in <== readings[i];
        zero[i] = IsZero();
        zero[i].in <== readings[i];
        ge54[i] = GreaterEqThan(10);
        ge54[i].in[0] <== readings[i];
        ge54[i].in[1] <== 54;
        ge70[i] = GreaterEqThan(10);
        ge70[i].in[0] <== readings[i];
        ge70[i].in[1] <== 70;
        gt180[i] = GreaterThan(10);
        gt180[i].in[0] <== readings[i];
        gt180[i].in[1] <== 180;
        // valid = 1 - zero; below = valid - ge54 (0 for a missing slot, whose ge54 is 0);
        // in range = ge70 - gt180 (gt180 implies ge70).
        nValid += 1 - zero[i].out;
        nBelow += 1 - zero[i].out - ge54[i].out;
        nIn += ge70[i].out - gt180[i].out;
        total += readings[i];
    }

    var M = N \ K;
    component h[M];
    for (var j = 0; j < M; j++) {
        var e = 0;
        for (var k = 0; k < K; k++) { e += readings[j * K + k] * (2 ** (10 * k)); }
        h[j] = Poseidon(2);
        if (j == 0) { h[j].inputs[0] <== salt; } else { h[j].inputs[0] <== h[j - 1].out; }
        h[j].inputs[1] <== e;
    }
    h[M - 1].out === dayCommit;

    component openOut = AccOpen();
    openOut.acc[0] <== accIn[0] + nValid;
    openOut.acc[1] <== accIn[1] + nIn;
    openOut.acc[2] <== accIn[2] + nBelow;
    openOut.acc[3] <== accIn[3] + total;
    openOut.r <== rOut;
    openOut.commit === accOutCommit;
}

// The claim: with s = (1, valid, inRange, below54, sum) opened from accCommit, valid >= 1 and
// a.s >= b.s and c.s >= d.s, every coefficient public, set by the verifier from the claim's
// words (glucoledger/zk/claims.py), each below 2^24 (so no sum reaches 2^70).
template Claim() {
    signal input accCommit;
    signal input a[5];
    signal input b[5];
    signal input c[5];
    signal input d[5];
    signal input acc[4];
    signal input r;

    component open = AccOpen();
    for (var i = 0; i < 4; i++) { open.acc[i] <== acc[i]; }
    open.r <== r;
    open.commit === accCommit;

    component none = IsZero();
    none.in <== acc[0];
    none.out === 0;

    component cb[20];
    for (var i = 0; i < 5; i++) {
        cb[i] = Num2Bits(24); cb[i].in <== a[i];
        cb[5 + i] = Num2Bits(24); cb[5 + i].in <== b[i];
        cb[10 + i] = Num2Bits(24); cb[10 + i].in <== c[i];
        cb[15 + i] = Num2Bits(24); cb[15 + i].in <== d[i];
    }
    signal s[5];
    s[0] <== 1;
    for (var i = 0; i < 4; i++) { s[i + 1] <== acc[i]; }
    signal pa[5];
    signal pb[5];
    signal pc[5];
    signal pd[5];
    var la = 0;
    var lb = 0;
    var lc = 0;
    var ld = 0;
    for (var i = 0; i < 5; i++) {
        pa[i] <== a[i] * s[i];
        pb[i] <== b[i] * s[i];
        pc[i] <== c[i] * s[i];
        pd[i] <== d[i] * s[i];
        la += pa[i];
        lb += pb[i];
        lc += pc[i];
        ld += pd[i];
    }
    component first = GreaterEqThan(70);
    first.in[0] <== la;
    first.in[1] <== lb;
    first.out === 1;
    component second = GreaterEqThan(70);
    second.in[0] <== lc;
    second.in[1] <== ld;
    second.out === 1;
}
