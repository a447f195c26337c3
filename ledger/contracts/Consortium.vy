# pragma version 0.4.3
"""
@title Consortium ledger for blockchain-federated learning on chest CT
@license Apache-2.0
@notice Kumar et al. 2020 (arXiv 2007.06537): a consortium of hospitals records
    data-sharing requests (Fig. 3) and the rounds of federated training. Only hashes,
    hospital ids and addresses, integer counts and integer scores are stored: scans
    and weights never go on chain.
    Who may call what:
    - anyone: `request_join(public_key)`; the hospital id is keccak256(public key), and
      the key must belong to the sender.
    - the deployer: `admit_founder(applicant)` until the first round opens.
    - members: `vote_admit(applicant)` (a majority of members admits), `share_record`,
      `retrieve_record`, `open_round`.
    - sampled members of round r: one `submit_update` each.
    - validators of round r (the `num_validators` member ids closest to the round seed
      by XOR distance, Eq. 13): one `vote` per update, never on their own.
    - the leader of round r (the closest id): `finalize`, once, with exactly the
      accepted set.
    Consensus (our precise reading of Eq. 17-18 with gamma, as in ledger/consensus.py): a vote's score is the validator's MAE of the
    updated model on its own held-out data, times SCORE_SCALE (Eq. 17). A vote passes
    when score <= gamma; an update is accepted when at least `quorum` of its votes pass
    (Eq. 18). Finalizing needs at least `quorum` votes on every submitted update.
"""

MAX_MEMBERS: constant(uint256) = 64
MAX_SAMPLED: constant(uint256) = 32
MAX_VALIDATORS: constant(uint256) = 16
SCORE_SCALE: constant(uint256) = 1000000

ROUND_NONE: constant(uint8) = 0
ROUND_OPEN: constant(uint8) = 1
ROUND_FINAL: constant(uint8) = 2


struct Record:
    data_hash: bytes32
    provider: address
    provider_id: bytes32
    data_type: String[32]
    size: uint256
    timestamp: uint256
    tx_count: uint256


struct Round:
    model_hash: bytes32
    new_model_hash: bytes32
    seed: bytes32
    leader: address
    state: uint8


struct Update:
    submitted: bool
    delta_hash: bytes32
    num_examples: uint256
    local_loss: uint256
    votes: uint256
    passes: uint256


event JoinRequested:
    applicant: indexed(address)
    hospital_id: bytes32

event AdmissionVoted:
    applicant: indexed(address)
    voter: indexed(address)
    votes: uint256

event MemberAdmitted:
    member: indexed(address)
    hospital_id: bytes32
    founder: bool

event RecordShared:
    record_id: indexed(uint256)
    data_hash: bytes32
    provider_id: bytes32
    data_type: String[32]
    size: uint256
    timestamp: uint256

event RecordRetrieved:
    record_id: indexed(uint256)
    data_hash: bytes32
    provider_id: bytes32
    requester_type: String[32]
    requester_id: bytes32
    timestamp: uint256
    tx_count: uint256

event RoundOpened:
    round: indexed(uint256)
    model_hash: bytes32
    seed: bytes32
    leader: address
    validators: DynArray[address, MAX_VALIDATORS]
    sampled: DynArray[address, MAX_SAMPLED]

event UpdateSubmitted:
    round: indexed(uint256)
    hospital: indexed(address)
    delta_hash: bytes32
    num_examples: uint256
    local_loss: uint256

event VoteCast:
    round: indexed(uint256)
    validator: indexed(address)
    hospital: indexed(address)
    score: uint256
    passed: bool

event UpdateDecided:
    round: indexed(uint256)
    hospital: indexed(address)
    accepted: bool
    votes: uint256
    passes: uint256

event RoundFinalized:
    round: indexed(uint256)
    model_hash: bytes32
    new_model_hash: bytes32
    accepted: DynArray[address, MAX_SAMPLED]


deployer: public(immutable(address))
num_validators: public(immutable(uint256))
quorum: public(immutable(uint256))
gamma: public(immutable(uint256))

members: public(DynArray[address, MAX_MEMBERS])
is_member: public(HashMap[address, bool])
hospital_id: public(HashMap[address, bytes32])
applied: public(HashMap[address, bool])
admit_votes: public(HashMap[address, uint256])
admit_voted: HashMap[address, HashMap[address, bool]]

records: public(HashMap[uint256, Record])
num_records: public(uint256)

last_round: public(uint256)
rounds: public(HashMap[uint256, Round])
sampled: HashMap[uint256, DynArray[address, MAX_SAMPLED]]
validators: HashMap[uint256, DynArray[address, MAX_VALIDATORS]]
is_sampled: HashMap[uint256, HashMap[address, bool]]
is_validator: HashMap[uint256, HashMap[address, bool]]
submitters: HashMap[uint256, DynArray[address, MAX_SAMPLED]]
updates: public(HashMap[uint256, HashMap[address, Update]])
voted: HashMap[uint256, HashMap[address, HashMap[address, bool]]]


@deploy
def __init__(_num_validators: uint256, _quorum: uint256, _gamma: uint256):
    """
    @param _num_validators Validators per round (k of Eq. 13), at most MAX_VALIDATORS.
    @param _quorum Passing votes an update needs; at most k - 1, so that an update by
        a validator can still reach it without its own vote.
    @param _gamma Largest passing score, an MAE times SCORE_SCALE (Eq. 18).
    """
    assert _num_validators >= 2 and _num_validators <= MAX_VALIDATORS, "bad validator count"
    assert _quorum >= 1 and _quorum < _num_validators, "bad quorum"
    deployer = msg.sender
    num_validators = _num_validators
    quorum = _quorum
    gamma = _gamma


@internal
@view
def _only_member():
    assert self.is_member[msg.sender], "not a member"


@internal
def _admit(applicant: address, founder: bool):
    assert self.applied[applicant], "no join request"
    assert not self.is_member[applicant], "already a member"
    self.is_member[applicant] = True
    self.members.append(applicant)
    log MemberAdmitted(member=applicant, hospital_id=self.hospital_id[applicant], founder=founder)


@external
def request_join(public_key: Bytes[64]):
    """
    @notice Ask to join; the hospital id is keccak256 of the 64-byte public key.
    @dev The key must hash to the sender's address, so ids cannot be claimed by others.
    """
    assert not self.is_member[msg.sender], "already a member"
    digest: bytes32 = keccak256(public_key)
    owner: address = convert(convert(convert(digest, uint256) % 2**160, uint160), address)
    assert len(public_key) == 64 and owner == msg.sender, "bad public key"
    self.applied[msg.sender] = True
    self.hospital_id[msg.sender] = digest
    log JoinRequested(applicant=msg.sender, hospital_id=digest)


@external
def admit_founder(applicant: address):
    """@notice The deployer admits founding members, until the first round opens."""
    assert msg.sender == deployer, "not the deployer"
    assert self.last_round == 0, "founding closed"
    self._admit(applicant, True)


@external
def vote_admit(applicant: address):
    """@notice A member votes to admit an applicant; a strict majority admits it."""
    self._only_member()
    assert self.applied[applicant], "no join request"
    assert not self.is_member[applicant], "already a member"
    assert not self.admit_voted[applicant][msg.sender], "already voted"
    self.admit_voted[applicant][msg.sender] = True
    self.admit_votes[applicant] += 1
    log AdmissionVoted(applicant=applicant, voter=msg.sender, votes=self.admit_votes[applicant])
    if 2 * self.admit_votes[applicant] > len(self.members):
        self._admit(applicant, False)


@external
def share_record(data_hash: bytes32, data_type: String[32], size: uint256) -> uint256:
    """@notice A member records that it shares data with this hash (Fig. 3)."""
    self._only_member()
    self.num_records += 1
    record_id: uint256 = self.num_records
    self.records[record_id] = Record(
        data_hash=data_hash,
        provider=msg.sender,
        provider_id=self.hospital_id[msg.sender],
        data_type=data_type,
        size=size,
        timestamp=block.timestamp,
        tx_count=0,
    )
    log RecordShared(
        record_id=record_id,
        data_hash=data_hash,
        provider_id=self.hospital_id[msg.sender],
        data_type=data_type,
        size=size,
        timestamp=block.timestamp,
    )
    return record_id


@external
def retrieve_record(record_id: uint256, requester_type: String[32]):
    """@notice A member retrieves a provider's record; its transaction count grows."""
    self._only_member()
    assert record_id >= 1 and record_id <= self.num_records, "unknown record"
    self.records[record_id].tx_count += 1
    record: Record = self.records[record_id]
    log RecordRetrieved(
        record_id=record_id,
        data_hash=record.data_hash,
        provider_id=record.provider_id,
        requester_type=requester_type,
        requester_id=self.hospital_id[msg.sender],
        timestamp=block.timestamp,
        tx_count=record.tx_count,
    )


@internal
@view
def _closest(seed: bytes32) -> DynArray[address, MAX_VALIDATORS]:
    """The num_validators members whose ids are closest to seed by XOR distance (Eq. 13)."""
    ids: DynArray[uint256, MAX_MEMBERS] = []
    for m: address in self.members:
        ids.append(convert(self.hospital_id[m], uint256))
    target: uint256 = convert(seed, uint256)
    taken: bool[MAX_MEMBERS] = empty(bool[MAX_MEMBERS])
    chosen: DynArray[address, MAX_VALIDATORS] = []
    for _: uint256 in range(num_validators, bound=MAX_VALIDATORS):
        best: uint256 = max_value(uint256)
        best_i: uint256 = MAX_MEMBERS
        for i: uint256 in range(len(ids), bound=MAX_MEMBERS):
            distance: uint256 = ids[i] ^ target  # Eq. 13
            if not taken[i] and (best_i == MAX_MEMBERS or distance < best):
                best = distance
                best_i = i
        taken[best_i] = True
        chosen.append(self.members[best_i])
    return chosen


@internal
@view
def _only_open(r: uint256):
    state: uint8 = self.rounds[r].state
    assert state != ROUND_NONE, "unknown round"
    assert state == ROUND_OPEN, "round closed"


@external
def open_round(r: uint256, model_hash: bytes32, sampled: DynArray[address, MAX_SAMPLED]):
    """
    @notice A member opens round r with the hash of the global model after r - 1 rounds.
    @dev Round r follows the finalized round r - 1 and must start from its model hash.
        The seed keccak256(model_hash ++ r) picks the leader and validators (Eq. 13).
    """
    self._only_member()
    assert r == self.last_round + 1, "round out of order"
    if r > 1:
        assert self.rounds[r - 1].state == ROUND_FINAL, "round out of order"
        assert self.rounds[r - 1].new_model_hash == model_hash, "model hash mismatch"
    assert len(self.members) >= num_validators, "too few members"
    assert len(sampled) >= 1, "bad sample"
    for h: address in sampled:
        assert self.is_member[h] and not self.is_sampled[r][h], "bad sample"
        self.is_sampled[r][h] = True
    seed: bytes32 = keccak256(concat(model_hash, convert(r, bytes32)))
    chosen: DynArray[address, MAX_VALIDATORS] = self._closest(seed)
    for v: address in chosen:
        self.is_validator[r][v] = True
    self.rounds[r] = Round(
        model_hash=model_hash,
        new_model_hash=empty(bytes32),
        seed=seed,
        leader=chosen[0],
        state=ROUND_OPEN,
    )
    self.sampled[r] = sampled
    self.validators[r] = chosen
    self.last_round = r
    log RoundOpened(
        round=r, model_hash=model_hash, seed=seed, leader=chosen[0], validators=chosen, sampled=sampled
    )


@external
def submit_update(r: uint256, delta_hash: bytes32, num_examples: uint256, local_loss: uint256):
    """@notice A sampled member submits its one update of round r (loss times SCORE_SCALE)."""
    self._only_member()
    self._only_open(r)
    assert self.is_sampled[r][msg.sender], "not sampled"
    assert not self.updates[r][msg.sender].submitted, "duplicate update"
    self.updates[r][msg.sender] = Update(
        submitted=True,
        delta_hash=delta_hash,
        num_examples=num_examples,
        local_loss=local_loss,
        votes=0,
        passes=0,
    )
    self.submitters[r].append(msg.sender)
    log UpdateSubmitted(
        round=r,
        hospital=msg.sender,
        delta_hash=delta_hash,
        num_examples=num_examples,
        local_loss=local_loss,
    )


@external
def vote(r: uint256, hospital: address, score: uint256):
    """@notice A validator scores another hospital's update: its MAE times SCORE_SCALE."""
    self._only_member()
    self._only_open(r)
    assert self.is_validator[r][msg.sender], "not a validator"
    assert self.updates[r][hospital].submitted, "unknown update"
    assert hospital != msg.sender, "self vote"
    assert not self.voted[r][msg.sender][hospital], "already voted"
    self.voted[r][msg.sender][hospital] = True
    passed: bool = score <= gamma  # Eq. 18
    self.updates[r][hospital].votes += 1
    if passed:
        self.updates[r][hospital].passes += 1
    log VoteCast(round=r, validator=msg.sender, hospital=hospital, score=score, passed=passed)


@external
def finalize(r: uint256, new_model_hash: bytes32, accepted: DynArray[address, MAX_SAMPLED]):
    """
    @notice The leader closes round r with the new global model's hash and exactly the
        updates that a quorum of votes passed (Eq. 18).
    """
    self._only_member()
    self._only_open(r)
    assert msg.sender == self.rounds[r].leader, "not the leader"
    num_passing: uint256 = 0
    for h: address in self.submitters[r]:
        update: Update = self.updates[r][h]
        assert update.votes >= quorum, "no quorum"
        ok: bool = update.passes >= quorum  # Eq. 18
        if ok:
            num_passing += 1
        log UpdateDecided(round=r, hospital=h, accepted=ok, votes=update.votes, passes=update.passes)
    assert len(accepted) == num_passing, "accepted set mismatch"
    for i: uint256 in range(len(accepted), bound=MAX_SAMPLED):
        h: address = accepted[i]
        assert self.updates[r][h].passes >= quorum, "accepted set mismatch"
        for j: uint256 in range(i, bound=MAX_SAMPLED):
            assert accepted[j] != h, "accepted set mismatch"
    self.rounds[r].state = ROUND_FINAL
    self.rounds[r].new_model_hash = new_model_hash
    log RoundFinalized(
        round=r,
        model_hash=self.rounds[r].model_hash,
        new_model_hash=new_model_hash,
        accepted=accepted,
    )


@external
@view
def member_count() -> uint256:
    return len(self.members)


@external
@view
def round_sampled(r: uint256) -> DynArray[address, MAX_SAMPLED]:
    return self.sampled[r]


@external
@view
def round_validators(r: uint256) -> DynArray[address, MAX_VALIDATORS]:
    return self.validators[r]


@external
@view
def is_accepted(r: uint256, hospital: address) -> bool:
    """@notice Whether a quorum of votes passed this update so far (Eq. 18)."""
    return self.updates[r][hospital].passes >= quorum
